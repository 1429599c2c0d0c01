"""The caching CPU allocator (pointformer.ops.cpu_cache): large blocks come back without page
faults, small ones are left to PyTorch, reuse is best fit within 1/8, the idle limit holds, blocks
outlive switching it off, a forked child can allocate, and the tools' switch reads its variable."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pointformer.ops import cpu_cache as cc

pytestmark = pytest.mark.skipif(not cc.available(), reason="needs the native extension (make build)")

MIB = 2**20
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def restore():
    yield
    cc.configure_cpu_cache(False)
    cc.empty_cpu_cache()


def _delta(before: cc.CpuCacheStats) -> tuple[int, int]:
    now = cc.cpu_cache_stats()
    return now.hits - before.hits, now.misses - before.misses


def test_large_blocks_reused_without_page_faults_and_values_independent() -> None:
    with cc.cpu_cache(True):
        torch.empty(16 * MIB).fill_(1.0)  # 64 MiB: first a miss
        before = cc.cpu_cache_stats()
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for i in range(5):
            t = torch.full((16 * MIB,), float(i))
            assert float(t[-1]) == float(i)
            del t
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
        assert _delta(before) == (5, 0)
        assert faults < 2000, faults  # 5 x 16384 pages without the cache
        # two live blocks at once are two blocks
        a, b = torch.ones(2 * MIB), torch.zeros(2 * MIB)
        assert a.data_ptr() != b.data_ptr() and float(a.sum()) == 2 * MIB and float(b.sum()) == 0
        stats = cc.cpu_cache_stats()
        assert stats.enabled and stats.live_bytes >= 16 * MIB


def test_small_requests_bypass_and_fit_within_an_eighth() -> None:
    with cc.cpu_cache(True):
        before = cc.cpu_cache_stats()
        for _ in range(10):
            torch.empty(1000)  # 4 KB: PyTorch's own allocator
        assert _delta(before) == (0, 0)
        del_me = torch.empty(4 * MIB // 4)  # a 4 MiB block, then idle
        del del_me
        before = cc.cpu_cache_stats()
        torch.empty(4 * MIB // 4 + MIB // 4 // 4)  # 4.25 MiB: more than the idle 4 MiB block -> miss
        torch.empty(3 * MIB // 4)  # 3 MiB: the 4 MiB block is more than 1/8 larger -> miss
        torch.empty((4 * MIB - 256 * 1024) // 4)  # 3.75 MiB fits the 4 MiB block (within 1/8) -> hit
        assert _delta(before)[1] == 2 and _delta(before)[0] >= 1


def test_idle_limit_and_blocks_outliving_the_switch() -> None:
    cc.configure_cpu_cache(True, max_cached_bytes=10 * MIB)
    blocks = [torch.empty(4 * MIB // 4) for _ in range(4)]  # 16 MiB live
    del blocks
    assert cc.cpu_cache_stats().idle_bytes <= 10 * MIB
    keep = torch.empty(8 * MIB // 4)
    cc.configure_cpu_cache(False)
    idle = cc.cpu_cache_stats().idle_bytes
    assert not cc.cpu_cache_stats().enabled
    del keep  # handed out while on, returned while off: freed, not kept
    stats = cc.cpu_cache_stats()
    assert stats.live_bytes == 0 and stats.idle_bytes == idle
    before = cc.cpu_cache_stats()
    torch.empty(4 * MIB // 4)
    assert _delta(before) == (0, 0)  # off: PyTorch's allocator again
    cc.empty_cpu_cache()
    assert cc.cpu_cache_stats().idle_bytes == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_allocates() -> None:
    with cc.cpu_cache(True):
        torch.empty(4 * MIB).fill_(1.0)
        pid = os.fork()
        if pid == 0:  # the child: a DataLoader worker's situation (one thread, as the loader sets)
            try:
                torch.set_num_threads(1)
                t = torch.empty(4 * MIB)
                t.fill_(2.0)
                os._exit(0 if float(t[0]) + float(t[-1]) == 4.0 else 1)
            finally:
                os._exit(1)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def test_setting_from_environment() -> None:
    assert cc.cache_setting({}) == cc.default_max_cached_bytes()
    assert cc.cache_setting({cc.CACHE_ENV: "off"}) is None
    assert cc.cache_setting({cc.CACHE_ENV: "512"}) == 512 * MIB
    for bad in ("lots", "-3", "0.5"):
        with pytest.raises(ValueError, match=cc.CACHE_ENV):
            cc.cache_setting({cc.CACHE_ENV: bad})
    assert cc.enable_from_env({cc.CACHE_ENV: "off"}) is False and not cc.cpu_cache_stats().enabled
    assert cc.enable_from_env({cc.CACHE_ENV: "64"}) is True and cc.cpu_cache_stats().enabled


def test_tool_reports_a_bad_setting_without_traceback(tmp_path) -> None:
    env = {**os.environ, cc.CACHE_ENV: "lots", "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "tools/test.py", "--cfg", "waymo_flatformer.yaml", "--ckpt", str(tmp_path / "none.pt")],
        cwd=REPO, capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert cc.CACHE_ENV in run.stderr and "Traceback" not in run.stderr
