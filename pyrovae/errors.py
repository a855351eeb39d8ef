"""The error policy that the command line and the library share, and two facts about an exception.

Bad input (a file, a setting, an option that cannot work) is an :class:`InputError`:
one line naming the problem and the fix, status 2 at the command line, raised
before anything is written. Every other exception that reaches the command line
is a fault of the run (status 1) or a bug (status 1, traceback with
``PYROVAE_TRACEBACK=1``).

Imports nothing heavy at module level, so that ``pyrovae --help`` stays fast.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

# what torch's CPU allocator ("DefaultCPUAllocator: can't allocate memory") and CUDA ("CUDA out of memory") say
OUT_OF_MEMORY = re.compile(r"out of memory|allocate memory", re.IGNORECASE)


class InputError(ValueError):
    """The user's input cannot work; the message names the problem and the fix (status 2)."""


class FieldError(InputError):
    """A setting of a configuration is of the wrong type or out of range.

    The message names the field as the configuration calls it; :meth:`renamed`
    names it as the user wrote it (a command-line option, a key of ``config.json``).

    :param field: the setting, e.g. ``batch_size``.
    :param problem: what is wrong, e.g. ``must be a positive integer, got 0``.
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field} {problem}")
        self.field, self.problem = field, problem

    def renamed(self, name: str, suffix: str = "") -> InputError:
        """The same problem with the setting called ``name``, and ``suffix`` appended."""
        return InputError(f"{name} {self.problem}{suffix}")


def one_line(e: BaseException, limit: int = 200) -> str:
    """``Type: message`` on one line, at most ``limit`` characters: for an error message of ours."""
    return " ".join(f"{type(e).__name__}: {e}".split())[:limit]


def is_out_of_memory(e: BaseException) -> bool:
    """Whether ``e`` reports a failed allocation (torch's ``OutOfMemoryError``, ``MemoryError``, or the message)."""
    import torch

    return isinstance(e, (torch.OutOfMemoryError, MemoryError)) or bool(OUT_OF_MEMORY.search(str(e)))


# Checks of one setting, for the configurations' __post_init__: each raises FieldError naming the field.
FLOAT32_MAX = 3.4028234663852886e38  # the largest float32: settings that reach a float32 tensor stay below it


def check_int(field: str, value: object, *, low: int = 1, high: int | None = None) -> None:
    """``value`` an integer (not a bool) in ``low .. high``."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise FieldError(field, f"must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        span = f"in {low} .. {high}" if high is not None else ("a positive integer" if low == 1 else f">= {low}")
        raise FieldError(field, f"must be {span}, got {value}")


def check_float(field: str, value: object, *, low: float = 0.0, positive: bool = False) -> None:
    """``value`` a finite number (int or float, not a bool) that float32 can hold (a larger one becomes
    infinite in a float32 tensor), and >= ``low`` (> 0 with ``positive``)."""
    span = " > 0" if positive else f" >= {low:g}" if low > -FLOAT32_MAX else ""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise FieldError(field, f"must be a finite number{span}, got {value!r}")
    if math.isfinite(value) and abs(value) > FLOAT32_MAX:
        raise FieldError(
            field, f"must be a finite number that float32 can hold (at most {FLOAT32_MAX:.3g}), got {value:g}"
        )
    if not (math.isfinite(value) and value >= low and (value > 0 or not positive)):
        raise FieldError(field, f"must be a finite number{span}, got {value:g}")


def check_choice(field: str, value: object, choices: Sequence[str]) -> None:
    """``value`` one of the strings ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise FieldError(field, f"must be one of {', '.join(choices)}, got {value!r}")


def check_type(field: str, value: object, kind: type | tuple[type, ...], what: str) -> None:
    """``value`` an instance of ``kind`` (``what`` says it in words, e.g. ``a string``)."""
    if not isinstance(value, kind) or isinstance(value, bool):
        raise FieldError(field, f"must be {what}, got {value!r}")


def check_sizes(field: str, value: object) -> None:
    """``value`` a tuple of positive integers (sizes of layers, epoch numbers)."""
    if not isinstance(value, tuple) or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        raise FieldError(field, f"must be a list of positive integers, got {value!r}")
