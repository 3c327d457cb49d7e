"""Keep freed memory in the process, so the large tensors of every step do not page-fault afresh (glibc only).

A step at 512 px allocates and frees ~70 MB of feature maps and gradients. glibc hands blocks that large back
to the kernel (mmap, or trimming the heap's top) and the next step faults them in again, page by page: 18,400
minor faults per step on the main thread (the command line, the bench), 13–15 % of a step at 512 px (README,
Performance).
Gradio's worker threads happened not to fault (their arenas keep memory), but one arena for all threads, no
mmap and no trimming make both the same.

The cost is that resident memory stays at its peak after a run (the way PyTorch's CUDA allocator keeps GPU
memory): ~1.5 GB after a 512 px run. A program that embeds stylize and would rather not have its malloc tuned
sets STYLIZE_KEEP_FREED_MEMORY=0.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# mallopt(3) parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8
NEVER_TRIM = 2**31 - 1  # the largest int mallopt takes: up to 2 GiB free at the heap's top is kept


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to reuse freed memory instead of returning it; True where it was told.

    Must run before other threads allocate (an arena, once a thread has one, is kept): `stylize.engine`
    calls it on import."""
    if not sys.platform.startswith("linux") or os.environ.get("STYLIZE_KEEP_FREED_MEMORY") == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all(mallopt(param, value) == 1
               for param, value in ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, NEVER_TRIM)))
