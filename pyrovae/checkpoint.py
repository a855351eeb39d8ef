"""Atomic file writes and checkpoints.

Every file a run writes goes through :func:`atomic_write`: the bytes go to a
temporary file in the same directory, are flushed to disk, and the temporary
file is renamed over the target. A crash at any moment leaves either the old
file or the new one, never half of one.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

from pyrovae.errors import one_line

CHECKPOINT = "checkpoint.pt"
FORMAT = 1  # bumped when the checkpoint layout changes


class CheckpointError(ValueError):
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
    """Load a checkpoint onto the CPU, with a clear error for a missing or corrupt file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint here (was the run started with this --out?)")
    fix = (
        f"restore it from a copy, or start the run over with pyrovae train --out {path.parent} --force "
        "(and the run's options)"
    )
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises several types for a damaged file
        raise CheckpointError(f"{path}: not a readable checkpoint ({one_line(e)}); {fix}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a pyrovae checkpoint of format {FORMAT}; {fix}")
    return state
