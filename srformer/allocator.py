"""Process-wide settings of glibc's allocator, one per kind of program (elsewhere than glibc: nothing).

PyTorch on the CPU allocates feature maps with malloc, so how glibc serves and returns large blocks decides
both the speed (page faults) and the peak memory (fragmentation) of long runs. A setting lasts for the rest of
the process: a program's entry point (a command, a server, a worker) chooses one; library functions never do.
"""

from __future__ import annotations

import contextlib
import ctypes

#: glibc's mallopt parameters: the size from which allocations are memory-mapped, and the free space at the
#: top of the heap from which it is given back to the system.
_M_MMAP_THRESHOLD, _M_TRIM_THRESHOLD = -3, -1

#: Allocations up to this size come from the heap and are reused once freed (see :func:`reuse_freed_memory`).
_HEAP_BLOCK_LIMIT = 256 * 2**20


def _mallopt(option: int, value: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(ctypes.c_int(option), ctypes.c_int(value))


def reuse_freed_memory() -> None:
    """Have glibc keep freed blocks of up to 256 MiB for reuse instead of giving them back to the system.

    A forward pass allocates and frees hundreds of feature maps of 10-100 MB. By default glibc serves those
    over 32 MiB by mmap and gives the top of the heap back, so the next tile faults the same memory in again,
    zero-filled by the kernel: 0.7 GiB of page faults per 256x256 tile; with every block over 1 MiB
    memory-mapped (this function's earlier setting, against fragmentation) 3.3 GiB, and the model ran about
    35% slower (2 threads, 2026-11-30, round-robin: 0.072 against 0.109-0.112 Mpx/s). With fixed thresholds
    a tile faults in nothing new, and the heap stays at the high-water mark of one tile plus one band.
    Process-wide: call it once at the start of a program that upscales many tiles. Elsewhere than glibc: nothing.
    """
    _mallopt(_M_MMAP_THRESHOLD, _HEAP_BLOCK_LIMIT)  # fixed: no longer raised (or lowered) by glibc
    _mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)


def serve_large_blocks_from_mmap() -> None:
    """Have glibc's malloc serve blocks of 64 KiB and more from ``mmap``, handing them back to the system on
    free, for the rest of the process (``M_MMAP_THRESHOLD``; what ``MALLOC_MMAP_THRESHOLD_=65536`` sets).

    By default glibc raises that threshold to the size of each large block freed, after which the ~10 MB
    activations of one path point come from its heap, and freeing them leaves fragments the next chunk does
    not fit in: the resident memory of a 256x256 LAM with the shipped x4 model grows from 1.9 GB after the
    first chunk to 2.2 GB, against 1.1 GB with the fixed threshold. No effect under other C libraries.
    """
    _mallopt(_M_MMAP_THRESHOLD, 64 * 1024)
