"""Atomic file writes and checkpoints that load without running code.

Every file a run writes goes through :func:`atomic_write`: the bytes go to a
temporary file in the same directory, are flushed to disk, and the temporary
file is renamed over the target. A crash at any moment leaves either the old
file or the new one, never half of one.

A checkpoint holds tensors and plain Python values only (numbers, strings,
lists, tuples, dicts), and is read with ``torch.load(weights_only=True)``: its
unpickler builds nothing else, so a checkpoint made to run code when unpickled
(an object whose ``__reduce__`` calls ``os.system``) is refused, never run.
Checkpoints of format 1 (pyrovae 0.1.0 before this) held numpy's RNG state as
a ``uint32`` array; they are read with numpy's array type allowed as well (it
builds arrays of numbers and nothing else) and converted.
"""

from __future__ import annotations

import io
import os
import pickle
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from pyrovae.errors import InputError, is_out_of_memory, one_line

CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"  # with early stopping: the checkpoint of the epoch of the highest validation ELBO
FORMAT = 3  # bumped when the checkpoint layout changes; 3: networks as module state dicts
READABLE = (2, FORMAT)  # 2: every parameter under its param-store name (still read: Trainer, load_run)
LEGACY_FORMAT = 1  # numpy's RNG state as an array: read with numpy's array globals allowed, then converted


class CheckpointError(InputError):
    """A checkpoint is missing, unreadable or does not fit; the message names the file."""


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Write ``path`` through ``write(file)`` so that readers never see a partial file.

    The file gets the mode of any newly created file (0666 less the umask), not
    the owner-only 0600 of the temporary file it is written through.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def _umask() -> int:
    """The process's umask: from ``/proc`` on Linux, else by setting it and setting it straight back."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically: :func:`atomic_write`."""
    atomic_write(path, lambda f: f.write(text.encode()))


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Atomically save ``state`` (tensors, plain containers) with a format tag."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buffer)
    atomic_write(path, lambda f: f.write(buffer.getbuffer()))


def load_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint onto the CPU without unpickling anything but tensors and plain values.

    :raises CheckpointError: for a missing, damaged or foreign file, one that would
        need unpickling (refused, never run), or parameters that are not finite.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint here (was the run started with this --out?)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # it holds objects other than tensors and plain values
        state = _load_legacy(path)
    except Exception as e:  # torch raises several types for a damaged file
        raise CheckpointError(f"{path}: not a readable checkpoint ({one_line(e)}); {_fix(path)}") from None
    if not isinstance(state, dict) or state.get("format") not in (*READABLE, LEGACY_FORMAT):
        raise CheckpointError(f"{path}: not a pyrovae checkpoint of format {FORMAT}; {_fix(path)}")
    if state["format"] == LEGACY_FORMAT:
        state = _convert_legacy(path, state)
    _check_finite(path, state)
    return state


def _fix(path: Path) -> str:
    return (
        f"restore it from a copy, or start the run over with pyrovae train --out {path.parent} --force "
        "(and the run's options)"
    )


# What format 1 pickled besides tensors and plain values: numpy's RNG state, a uint32 array.
_LEGACY_GLOBALS = {"numpy._core.multiarray._reconstruct", "numpy.core.multiarray._reconstruct", "numpy.ndarray"}
_LEGACY_GLOBALS |= {"numpy.dtype", "numpy.dtypes.UInt32DType"}


def _load_legacy(path: Path) -> dict:
    """A format-1 checkpoint, whose only non-plain objects are numpy arrays of numbers; anything else is refused."""
    try:
        found = set(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception as e:  # not torch's zip format: a damaged or foreign file
        raise CheckpointError(f"{path}: not a readable checkpoint ({one_line(e)}); {_fix(path)}") from None
    if not found <= _LEGACY_GLOBALS:
        objects = ", ".join(sorted(found - _LEGACY_GLOBALS)[:3])
        raise CheckpointError(
            f"{path}: not a plain pyrovae checkpoint: it holds Python objects ({objects}) that only unpickling "
            "could build, and pyrovae will not unpickle it (loading a run directory never runs code from it); "
            "use a checkpoint written by pyrovae train"
        )
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct

    allowed = [np.ndarray, np.dtype, type(np.dtype(np.uint32)), _reconstruct]
    allowed.append((_reconstruct, "numpy.core.multiarray._reconstruct"))  # as numpy < 2 pickled it
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # e.g. an array of Python objects: its dtype is not allowed
        raise CheckpointError(f"{path}: not a plain pyrovae checkpoint ({one_line(e)}); {_fix(path)}") from None


def _convert_legacy(path: Path, state: dict) -> dict:
    """Format 1 to format 2 (read as such): numpy's RNG state ``(name, uint32 array, pos, ...)`` with a tensor."""
    try:
        name, key, *rest = state["trainer"]["rng"]["numpy"]
        numpy_state = (name, torch.from_numpy(np.asarray(key, dtype=np.uint32).astype(np.int64)), *rest)
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"{path}: a format-1 checkpoint without numpy's RNG state; {_fix(path)}") from None
    trainer = {**state["trainer"], "rng": {**state["trainer"]["rng"], "numpy": numpy_state}}
    return {**state, "format": 2, "trainer": trainer}


def _check_finite(path: Path, state: dict) -> None:
    """Every saved parameter finite: pyrovae writes no other, so a NaN means the file was altered."""
    trainer = state.get("trainer", {}) if isinstance(state.get("trainer"), dict) else {}
    saved = [trainer.get("params", {})]
    saved += list(trainer.get("modules", {}).values()) if isinstance(trainer.get("modules"), dict) else []
    for name, value in (item for params in saved if isinstance(params, dict) for item in params.items()):
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all():
            raise CheckpointError(
                f"{path}: parameter {name} holds NaN or infinite values, which pyrovae never saves (the file was "
                f"altered or damaged); {_fix(path)}"
            )


@contextmanager
def fits(path: Path) -> Iterator[None]:
    """Report a checkpoint whose contents do not fit the model being built as a :class:`CheckpointError`."""
    try:
        yield
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        if is_out_of_memory(e):
            raise  # not the checkpoint's fault
        raise CheckpointError(f"{path}: does not fit this version of pyrovae or this run ({e})") from None
