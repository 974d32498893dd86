"""Argument types shared by the ``samnas`` sub-commands: checked when the command line is parsed,
so impossible values are one-line errors before any work starts."""
from __future__ import annotations

import argparse
import dataclasses
import math


def _number(kind, text: str, what: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """``--trials 0`` or ``--trials -3`` -> ``argument --trials: must be at least 1, got -3``."""
    value = _number(int, text, "a whole number of at least 1")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = _number(int, text, "a whole number of at least 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {text}")
    return value


def positive_float(text: str) -> float:
    """``--budget-ms -5`` -> ``argument --budget-ms: must be a positive number, got -5``."""
    value = _number(float, text, "a positive number")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def open_fraction(text: str) -> float:
    """``--focal-alpha 1.5`` -> ``argument --focal-alpha: must be between 0 and 1 (exclusive), got 1.5``."""
    value = _number(float, text, "a number between 0 and 1 (exclusive)")
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {text}")
    return value


def default_of(settings_cls, name: str):
    """The default of field ``name`` of the dataclass ``settings_cls``, so that a command's option and the
    settings it fills share one default (``default_of(TrainSettings, "lr")``)."""
    for f in dataclasses.fields(settings_cls):
        if f.name == name:
            if f.default is dataclasses.MISSING:
                raise TypeError(f"{settings_cls.__name__}.{name} has no plain default")
            return f.default
    raise TypeError(f"{settings_cls.__name__} has no field {name!r}")
