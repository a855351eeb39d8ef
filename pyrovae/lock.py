"""One writer per run directory: an exclusive ``flock`` on ``RUN_DIR/.pyrovae.lock``.

``pyrovae train`` and ``pyrovae evaluate`` hold the lock for as long as they
run; a second process that asks for it is refused at once, told which process
holds it. The kernel releases a ``flock`` when its holder exits, however it
exits (``kill -9``, a power cut ends every holder), so a lock never outlives
its process and nothing has to be cleaned up: the file stays, and only says
who held it last. ``flock`` locks are per open file, so two opens in one
process exclude each other too.

References: flock(2), Linux man-pages.
"""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pyrovae.errors import InputError

LOCK = ".pyrovae.lock"


class RunLocked(InputError):
    """Another process holds the run directory's lock; the message names it."""


@contextmanager
def run_lock(run_dir: str | Path, command: str) -> Iterator[None]:
    """Hold the exclusive lock of ``run_dir`` (an existing directory) while the block runs.

    :param command: what this process does there (``train``, ``evaluate``), recorded for whoever is refused.
    :raises RunLocked: when another process (or another open in this one) holds the lock.
    :raises InputError: when the lock file cannot be created (a read-only directory).
    """
    path = Path(run_dir) / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise InputError(
            f"{run_dir}: cannot lock the run directory ({e.strerror or e}); pyrovae {command} writes in it, so "
            "it must be writable: fix its permissions, or copy the run to a writable directory"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise RunLocked(
                f"{run_dir} is in use by {holder}; one process at a time may write a run directory: wait until it "
                "has finished (or stop it), then run this again"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pyrovae {command} (process {os.getpid()} on {socket.gethostname()})\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
