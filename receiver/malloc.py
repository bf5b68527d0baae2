"""Freed message buffers go back to the operating system (glibc's malloc).

glibc serves a request above its mmap threshold with a mapping of its own and unmaps it
when freed, but every such free raises the threshold to the freed block's size (up to
32 MiB). After the first 20 MB message, later ones came from the heap, and freed heap
memory mostly stays with the process: in the mixed scenario of bench/smtp_load.py the
receiver held 716 MB, and each parse worker 340 MB, for 256 MiB of messages in flight.
A threshold set once turns that adjustment off, so resident memory follows the bytes
actually held (382 MB and 279 MB in the same run).
"""

from __future__ import annotations

import ctypes

M_MMAP_THRESHOLD = -3  # glibc's <malloc.h>
THRESHOLD = 256 * 1024


def unmap_large_blocks(threshold: int = THRESHOLD) -> bool:
    """Serve every block of `threshold` bytes or more from its own mapping, in this process
    (and in the ones it forks). False where the C library has no glibc `mallopt`."""
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    return mallopt(M_MMAP_THRESHOLD, threshold) == 1
