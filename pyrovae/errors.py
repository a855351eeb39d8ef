"""Two facts about an exception that the command line and the loaders share.

Imports nothing heavy at module level, so that ``pyrovae --help`` stays fast.
"""

from __future__ import annotations

import re

# what torch's CPU allocator ("DefaultCPUAllocator: can't allocate memory") and CUDA ("CUDA out of memory") say
OUT_OF_MEMORY = re.compile(r"out of memory|allocate memory", re.IGNORECASE)


def one_line(e: BaseException, limit: int = 200) -> str:
    """``Type: message`` on one line, at most ``limit`` characters: for an error message of ours."""
    return " ".join(f"{type(e).__name__}: {e}".split())[:limit]


def is_out_of_memory(e: BaseException) -> bool:
    """Whether ``e`` reports a failed allocation (torch's ``OutOfMemoryError``, ``MemoryError``, or the message)."""
    import torch

    return isinstance(e, (torch.OutOfMemoryError, MemoryError)) or bool(OUT_OF_MEMORY.search(str(e)))
