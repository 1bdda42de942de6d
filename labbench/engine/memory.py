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
import functools
import platform

__all__ = ["MMAP_THRESHOLD", "keep_large_arrays_mapped", "release_object_store_pages"]

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


_MADV_DONTNEED = 4       # <sys/mman.h> on Linux


def release_object_store_pages() -> int:
    """Drop this process's resident pages of Ray's object store (plasma), keeping their data.

    Every process that writes or reads an object of the local object store maps the store's
    shared-memory file, and the pages it has touched stay resident in it (``RssShmem``) long
    after the object is gone. As blocks come and go the store's allocator hands out pages not
    used before, so a device actor and the run's writer grew by ~45 MiB over 10^6 steps
    without holding anything more. ``madvise(MADV_DONTNEED)`` on a *shared* mapping only
    unmaps the pages from this process: the data stays in the file (an object still in use
    is read back from it on the next access), so this is safe at any time; the store's own
    memory is Ray's (bounded by its ``object_store_memory``).

    Returns
    -------
    int
        Bytes of mappings released (0 off Linux, or with no object store mapped).
    """
    if platform.system() != "Linux":
        return 0
    global _calls, _spans
    _calls += 1
    try:
        if _calls % _REREAD_MAPS_EVERY == 1 or not _spans:   # the store may map more files later
            with open("/proc/self/maps") as fh:
                _spans = [tuple(int(v, 16) for v in line.split(None, 1)[0].split("-")) for line in fh
                          if "/plasma" in line and line.split(None, 2)[1][3:4] == "s"]
    except OSError:
        return 0
    released = 0
    for lo, hi in _spans:
        if _libc().madvise(ctypes.c_void_p(lo), ctypes.c_size_t(hi - lo), _MADV_DONTNEED) == 0:
            released += hi - lo
    return released


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None)


_REREAD_MAPS_EVERY = 32
_calls = 0
_spans: list[tuple[int, int]] = []
