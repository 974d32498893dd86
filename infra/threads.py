"""torch's intra-op thread count, set for a block of code and restored after (never for the whole process)."""
from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def torch_threads(n: int | None):
    """Run the block with ``n`` intra-op torch threads, restoring the previous count after.

    ``n`` None leaves the count as it is (a command's ``--threads`` not given).
    """
    import torch

    previous = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)
