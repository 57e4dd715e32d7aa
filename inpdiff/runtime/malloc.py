"""glibc's allocator, set for a process that works photos of hundreds of megabytes one after another.
Nothing to do where the C library is not glibc."""
from __future__ import annotations

import ctypes

_M_MMAP_THRESHOLD, _M_ARENA_MAX = -3, -8


def _glibc(function: str, *args: int) -> None:
    try:
        getattr(ctypes.CDLL("libc.so.6"), function)(*args)
    except (OSError, AttributeError):
        pass


def few_arenas(n: int = 2) -> None:
    """glibc gives threads heaps of their own (arenas), up to eight a core, and each keeps much of what
    was freed in it: a run's workers, assemblers and copy searches leave a photo's temporaries in
    different heaps. Five 12 MP photos, worked one after another, peaked at 693 MB (main process) with
    glibc's arenas and at 533 MB with two, at the same speed. Call it before the threads start: a
    thread keeps the arena it first allocated in."""
    _glibc("mallopt", _M_ARENA_MAX, n)


def fixed_mmap_threshold(nbytes: int = 1 << 20) -> None:
    """glibc serves allocations above a threshold with mmap, which a free returns to the system, but it
    raises that threshold after each large free: the band-sized buffers a spilled photo is worked in
    then come from heaps that keep what they once held (99 MP: 100 MB more at the peak). From the first
    spilled photo on, the process keeps a fixed threshold; not before, since the page faults of fresh
    mappings cost smaller photos 15-20% of their time."""
    _glibc("mallopt", _M_MMAP_THRESHOLD, nbytes)


def trim() -> None:
    """Hands what the heaps hold free back to the system (a decoder process, between photos: what one
    photo's decoding freed in the middle of a heap stays resident otherwise, 100 MB after six photos)."""
    _glibc("malloc_trim", 0)
