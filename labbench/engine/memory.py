"""A process's memory flat in run length: large arrays mapped, not carved from the heap.

glibc's ``malloc`` serves a request of at least its *mmap threshold* with a fresh mapping
that ``free`` gives back to the system, and anything smaller from the heap. The threshold
starts at 128 KiB and rises each time a mapped block is freed (up to 32 MiB), so after the
first few blocks a bench process's block-sized arrays (a 2,000-row block of N=1000 float64
features is 16 MiB) come from the heap instead. Allocated and freed block after block, at
varying sizes and from several threads (Zarr's I/O loop, Ray's), they fragment it, and the
resident memory creeps up with the number of blocks although the live objects stay the same
size: a ridge trainer at N=1000 went from 304 MiB at 10^4 rows to 369 MiB at 10^5 with
tracemalloc flat. Fixing the threshold turns the adjustment off; the trainer then held
304 MiB at both lengths.
"""

from __future__ import annotations

import ctypes
import platform

__all__ = ["MMAP_THRESHOLD", "keep_large_arrays_mapped"]

#: bytes from which an allocation is a mapping of its own (given back when freed)
MMAP_THRESHOLD = 1 << 20
_M_MMAP_THRESHOLD = -3   # mallopt's parameter number in glibc's <malloc.h>


def keep_large_arrays_mapped(threshold: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold for this process, so its peak memory does not grow with
    the number of blocks it handles.

    Parameters
    ----------
    threshold : int
        Bytes from which an allocation gets a mapping of its own.

    Returns
    -------
    bool
        True if the threshold was set; False where the C library is not glibc (macOS,
        musl, Windows), which is then left as it is.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        return bool(ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, int(threshold)))
    except (OSError, AttributeError):   # no mallopt in this C library
        return False
