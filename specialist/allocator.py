"""The C allocator a CPU training process runs on: the system's, with glibc's heap bounded; jemalloc on request.

Why: glibc malloc raises its mmap threshold each time a large block is freed (up to 32 MB), so activation-sized
blocks soon come from its heap, and freed in another order than allocated they fragment it. Measured with
--gradient-checkpointing, batch 4 x 1024 tokens: a process held 10.2 GB after 3 steps for ~1.6 GB of live
tensors. `bound_glibc_heap` fixes the threshold at 4 MB (2.2 GB; 2.71 GB at batch 8).

jemalloc (SPECIALIST_ALLOCATOR=jemalloc) is faster (79.8 against 52.7 tokens/s, checkpointed, batch 8) but with
purging off it does not stay bounded over a long run: the reliability soak's job grew to 22 GB and was killed by
the kernel (sst2, batch 8: 1.7 -> 9.4 GB in 150 s, where glibc stayed at 2.3-2.5 GB). So it is opt-in:
`specialist train` re-executes itself under it once (`reexec_under_jemalloc`), and the job executor starts its
runners with it (`jemalloc_env`), only when asked.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

# Keep freed pages for reuse instead of handing them back: returning and re-faulting them cost ~45% of the speed.
JEMALLOC_CONF = "dirty_decay_ms:-1,muzzy_decay_ms:-1"
JEMALLOC_PATHS = (
    "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",  # Debian/Ubuntu: apt install libjemalloc2
    "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
    "/usr/lib64/libjemalloc.so.2",  # Fedora/RHEL: dnf install jemalloc
    "/usr/local/lib/libjemalloc.so.2",
    "/opt/homebrew/lib/libjemalloc.2.dylib",
)
M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
ALLOCATOR_ENV = "SPECIALIST_ALLOCATOR"  # "jemalloc": train on jemalloc; unset or "system": the system allocator


def find_jemalloc() -> str | None:
    """Path of the machine's jemalloc (SPECIALIST_JEMALLOC overrides the search), or None."""
    explicit = os.environ.get("SPECIALIST_JEMALLOC")
    candidates = (explicit,) if explicit else JEMALLOC_PATHS
    return next((path for path in candidates if Path(path).is_file()), None)


def on_jemalloc() -> bool:
    """Whether this process allocates with jemalloc (preloaded or linked)."""
    try:
        return "libjemalloc" in Path("/proc/self/maps").read_text()
    except OSError:
        return False


def jemalloc_env(env: dict[str, str]) -> dict[str, str]:
    """`env` for a child process, with jemalloc preloaded when asked for (SPECIALIST_ALLOCATOR=jemalloc) and found."""
    lib = find_jemalloc()
    if lib is None or env.get(ALLOCATOR_ENV) != "jemalloc" or sys.platform != "linux":
        return dict(env)
    preload = env.get("LD_PRELOAD", "")
    if "jemalloc" in preload:
        return dict(env)
    return {
        **env,
        "LD_PRELOAD": f"{lib} {preload}".strip(),
        "MALLOC_CONF": env.get("MALLOC_CONF", JEMALLOC_CONF),
    }


def reexec_under_jemalloc() -> None:
    """Replace this process by the same command under jemalloc, once, when asked for; no-op where there is none,
    it is not asked for, or it is on already."""
    if on_jemalloc():
        return
    env = jemalloc_env(dict(os.environ))
    if env.get("LD_PRELOAD") == os.environ.get("LD_PRELOAD"):
        return  # not asked for, none found, or preloaded already without taking effect: do not loop
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def bound_glibc_heap() -> None:
    """Without jemalloc: fix glibc's mmap threshold at 4 MB so activation-sized blocks are mapped and returned
    whole instead of fragmenting the heap (measured: 2.2 GB where the default held 10.2 GB; ~13% slower)."""
    if on_jemalloc() or not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, 4 * 2**20)
    except (OSError, AttributeError):  # not glibc (musl, ...): its own allocator, nothing to set
        pass
