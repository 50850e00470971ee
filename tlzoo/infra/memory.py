"""Keeping a long run's memory flat: hand freed memory back to the operating system.

Feature extraction allocates and frees batch-sized tensors (tens of MB each) thousands of
times, some of them in the prefetch thread.  glibc's allocator raises its mmap threshold
after the first such free (up to 32 MiB), so later blocks come from its heaps, fragment
them, and stay counted in the process's resident memory after the extraction is done:
measured on EfficientNet-Lite0 at 64 px, batch 256, 3,000 images (15 MB of features): 146 MB
more resident after the extraction than before it, 73 MB with a fixed threshold, 23 MB after
``trim()`` too.  A fixed threshold keeps every block of 4 MiB or more in its own mapping,
returned whole when freed; ``trim()`` returns what the heaps hold free between steps.  Both
are no-ops where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from functools import cache

from tlzoo.api.errors import TlzooError

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
MMAP_THRESHOLD = 4 << 20


@cache
def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt  # noqa: B018  (glibc only: musl has no mallopt)
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def fix_mmap_threshold() -> bool:
    """Serve blocks of 4 MiB or more from their own mappings for the rest of the process (see above)."""
    libc = _libc()
    return bool(libc is not None and libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))


def trim() -> None:
    """Return the free memory the allocator's heaps hold to the operating system."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


# What one batch of images costs at least, held up front against the memory there is (issue 17 §9):
# the float32 input batch, its prefetched successor and the first layers' activations, which are
# of the same order (a stem convolution keeps about as many values as the image it reads).
BYTES_PER_VALUE = 4
COPIES_PER_BATCH = 4


def available_bytes() -> int | None:
    """The memory the operating system can still give this process (Linux: MemAvailable), or None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def image_batch_bytes(batch_size: int, image_size: int, channels: int = 3) -> int:
    """A lower bound on the memory one batch of ``image_size`` square images takes while it runs."""
    return batch_size * channels * image_size * image_size * BYTES_PER_VALUE * COPIES_PER_BATCH


def check_image_batch(batch_size: int, image_size: int, available: int | None, where: str = "memory") -> None:
    """One line naming ``--batch-size`` and ``--image-size`` when one batch cannot fit in ``available`` bytes."""
    need = image_batch_bytes(batch_size, image_size)
    if available is None or need <= available:
        return
    fits = max(1, available // image_batch_bytes(1, image_size))
    raise TlzooError(
        f"A batch of {batch_size} images of {image_size}x{image_size} pixels needs at least {_gb(need)} of {where}, "
        f"and {_gb(available)} is available; lower --batch-size (at most {fits} at this size) or --image-size "
        "(0: the size the weights were trained at)."
    )


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.0f} MB"
