"""The server's malloc policy (server/memory.py): freed blocks are reused, not faulted in again.

Counted in minor page faults, which do not depend on the machine's speed: a loop that allocates
the same large tensors on a pool thread, as a batched pass on a gRPC worker does.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

from server.config import load_config
from server.memory import MAX_KEEP_MB, keep_freed_memory
from tests.conftest import skip_machine_specific

GLIBC = platform.libc_ver()[0] == "glibc"

LOOP = """
import json, resource, sys, threading
import torch
from server.memory import keep_freed_memory
took = keep_freed_memory(int(sys.argv[1]))
faults = []
def loop():
    for _ in range(16):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        big = torch.empty(12_000_000).fill_(1.0)    # 48 MB, above glibc's largest mmap threshold
        mid = torch.empty(5_000_000).fill_(2.0)     # 20 MB
        keep = torch.empty(1000).fill_(0.0)         # a small block allocated after them
        del big, mid
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
thread = threading.Thread(target=loop)
thread.start()
thread.join()
print(json.dumps({"took": took, "faults": faults}))
"""


def run_loop(keep_mb: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", LOOP, str(keep_mb)], capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_pool_thread_reuses_freed_blocks_under_the_policy_and_refaults_them_without() -> None:
    if not GLIBC:
        skip_machine_specific("the policy is glibc's mallopt; other C libraries keep their own")
    kept = run_loop(256)
    default = run_loop(0)
    assert kept["took"] is True and default["took"] is False
    # 48 MB is ~11,700 pages: without the policy every later iteration maps the block afresh
    assert min(default["faults"][-6:]) > 10_000, default
    # with it the heap settles within a few iterations and then takes (almost) no faults
    assert max(kept["faults"][-6:]) < 100, kept


def test_keep_freed_memory_checks_its_range_and_zero_leaves_the_defaults() -> None:
    assert keep_freed_memory(0) is False
    for bad in (-1, MAX_KEEP_MB + 1):
        with pytest.raises(ValueError, match="keep_mb"):
            keep_freed_memory(bad)


def test_the_server_flag_and_env_var() -> None:
    assert load_config([], environ={}).keep_freed_mb == 256
    assert load_config(["--keep-freed-mb", "0"], environ={}).keep_freed_mb == 0
    assert load_config([], environ={"INTERP_KEEP_FREED_MB": "512"}).keep_freed_mb == 512
    for bad in ("-1", str(MAX_KEEP_MB + 1)):
        with pytest.raises(SystemExit, match="keep-freed-mb"):
            load_config(["--keep-freed-mb", bad], environ={})
