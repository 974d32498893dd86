"""Words shared by the commands' messages."""
from __future__ import annotations


def plural(count, noun: str) -> str:
    """``"1 thread"``, ``"2 threads"``; a count that is not a number (``None``, ``"?"``) reads ``"? threads"``."""
    if count is None or isinstance(count, bool) or not isinstance(count, (int, float)):
        return f"? {noun}s"
    return f"{count:g} {noun}" if count == 1 else f"{count:g} {noun}s"
