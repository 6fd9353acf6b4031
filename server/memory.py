"""Process memory policy: freed tensor memory is kept for reuse, not returned and faulted in again.

With glibc's default malloc, a block of 32 MiB or more is ``mmap``-ed when no free heap chunk
fits it and ``munmap``-ed on free, and the dynamic threshold below that moves with what was freed
last. A batched pass allocates the same large blocks batch after batch (LeNet at batch 1,024:
oneDNN's 49 MiB blocked output of ``conv1``, 19 MiB maps), so whether they are reused or mapped
afresh, page by page (``clear_page`` in the kernel), depends on the heap's layout at that moment.
Measured over 60,000 Fashion-MNIST images, 2 torch threads: a raw LeNet forward on a gRPC pool
thread took 727,610 minor page faults per pass and ~2.5 s instead of ~1.6 s; on the main thread
it took none, until another computation had left the heap fragmented, and then the same 727,610.

:func:`keep_freed_memory` makes glibc serve every block from one heap (``M_ARENA_MAX`` 1: a
pool thread's own arena is made of 64 MiB heaps and maps anything larger afresh; ``M_MMAP_MAX``
0) and return the free top of that heap to the system only beyond ``keep_mb``
(``M_TRIM_THRESHOLD``): the same loops then take no page faults after their first batches. The
costs: up to ``keep_mb`` of freed memory stays resident, freed holes below live blocks are
reused rather than returned, and threads share one arena's lock (Python objects and the small
tensors of a request mostly come from elsewhere: pymalloc, and blocks reused under the lock).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8
MAX_KEEP_MB = 2047  # the threshold is a C int of bytes


def keep_freed_memory(keep_mb: int) -> bool:
    """Set the policy above for this process; ``keep_mb`` 0 leaves glibc's defaults.

    Returns whether it took effect (False without glibc's ``mallopt``, e.g. on musl or macOS).
    """
    if not 0 <= keep_mb <= MAX_KEEP_MB:
        raise ValueError(f"keep_mb must be in 0..{MAX_KEEP_MB}, got {keep_mb}")
    if keep_mb == 0:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        log.info("no glibc mallopt here: freed memory follows the system allocator's policy")
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt answers 1 on success; musl's stub answers 0
    settings = ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, keep_mb << 20))
    return all(mallopt(option, value) == 1 for option, value in settings)


def memory_available_bytes() -> int:
    """The memory this process may use: the cgroup (v2, then v1) limit if any, else physical RAM."""
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < physical:  # "max" or a huge v1 number: no limit
            return int(text)
    return physical
