"""ksight.lab.blockdev: a loop-device ext4 and a write throttle on that device only.

Live tests (root) check the kernel's own view (/sys/block/loopN, /proc/self/mountinfo, the
blkio/io rule files) and measure the throttle with a stopwatch: an fsync of N MiB through a
B MiB/s throttle cannot finish in much less than N/B seconds, and without it is far faster.
detect_throttle() is also tested on made-up mount tables (no root needed)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from ksight.errors import Unavailable
from ksight.lab import blockdev
from tests.conftest import needs_root, unavailable

MiB = 1 << 20


def _usable() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    if blockdev.tools_missing():
        return f"needs {' '.join(blockdev.tools_missing())} on PATH (util-linux, mount, e2fsprogs)"
    if not os.path.exists("/dev/loop-control"):
        return "no loop devices"
    return None


def _skip_unless_usable():
    why = _usable()
    if why == "needs root":
        pytest.skip(why)
    if why:
        unavailable(why)  # missing tools or loop devices: a failure in CI


def _mounted(mountpoint: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [ln for ln in f.read().splitlines() if ln.split()[4] == mountpoint]


def _backing(dev: str) -> str | None:
    try:
        with open(f"/sys/block/{os.path.basename(dev)}/loop/backing_file") as f:
            return f.read().strip()
    except OSError:
        return None


def _timed_write(path: str, size: int) -> float:
    buf = b"\x11" * MiB
    t0 = time.monotonic()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(size // MiB):
            os.write(fd, buf)
        os.fsync(fd)
    finally:
        os.close(fd)
    return time.monotonic() - t0


# -- detect_throttle on made-up mount tables ------------------------------------------------
def _fake_mounts(monkeypatch, tmp_path, lines: list[str]) -> None:
    from ksight.sources import mounts

    table = mounts.parse("".join(ln + "\n" for ln in lines))
    monkeypatch.setattr(blockdev, "mounts", lambda: table.entries)


def test_detect_throttle_v1_blkio(monkeypatch, tmp_path):
    blk = tmp_path / "blkio"
    blk.mkdir()
    (blk / "blkio.throttle.write_bps_device").write_text("")
    _fake_mounts(monkeypatch, tmp_path, [
        "30 25 0:26 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw",
        f"33 25 0:29 / {blk} rw,nosuid - cgroup cgroup rw,blkio",
    ])
    assert blockdev.detect_throttle() == (1, str(blk))


def test_detect_throttle_v1_without_throttling(monkeypatch, tmp_path):
    blk = tmp_path / "blkio"
    blk.mkdir()  # no blkio.throttle.* files: CONFIG_BLK_DEV_THROTTLING=n
    _fake_mounts(monkeypatch, tmp_path, [f"33 25 0:29 / {blk} rw - cgroup cgroup rw,blkio"])
    with pytest.raises(Unavailable) as exc:
        blockdev.detect_throttle()
    assert "CONFIG_BLK_DEV_THROTTLING" in exc.value.reason


def test_detect_throttle_v2_needs_io_and_memory(monkeypatch, tmp_path):
    cg = tmp_path / "cg2"
    cg.mkdir()
    (cg / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    _fake_mounts(monkeypatch, tmp_path, [f"30 25 0:26 / {cg} rw - cgroup2 cgroup2 rw"])
    assert blockdev.detect_throttle() == (2, str(cg))
    (cg / "cgroup.controllers").write_text("cpuset cpu memory pids\n")  # no io
    with pytest.raises(Unavailable) as exc:
        blockdev.detect_throttle()
    assert "io" in exc.value.reason


def test_detect_throttle_nothing_mounted(monkeypatch, tmp_path):
    _fake_mounts(monkeypatch, tmp_path, ["22 1 253:0 / / rw - ext4 /dev/vda rw"])
    with pytest.raises(Unavailable):
        blockdev.detect_throttle()


def test_bad_arguments():
    with pytest.raises(ValueError):
        blockdev.WriteThrottle("sda", 1)
    with pytest.raises(ValueError):
        blockdev.WriteThrottle("7:0", 0)
    with pytest.raises(ValueError):
        blockdev.LoopFs(MiB, name="../x")


# -- live -----------------------------------------------------------------------------------
@needs_root
def test_loopfs_attaches_mounts_and_goes_away():
    _skip_unless_usable()
    with blockdev.LoopFs(64 * MiB, name="t") as fs:
        assert _backing(fs.device) == fs.backing
        assert fs.dio  # /sys/block/loopN/loop/dio
        with open(f"/sys/block/{os.path.basename(fs.device)}/dev") as f:
            assert f.read().strip() == fs.majmin
        st = os.stat(fs.backing)
        assert st.st_size == 64 * MiB
        assert st.st_blocks * 512 < 32 * MiB  # sparse: only what mkfs wrote
        lines = _mounted(fs.mountpoint)
        assert len(lines) == 1 and " - ext4 " in lines[0]
        sv = os.statvfs(fs.mountpoint)
        assert 48 * MiB <= sv.f_blocks * sv.f_frsize <= 64 * MiB
        d, dev = fs.dir, fs.device
    assert _mounted(fs.mountpoint) == []
    assert _backing(dev) != fs.backing
    assert not os.path.exists(d)


@needs_root
def test_throttle_slows_writes_to_that_device_only():
    _skip_unless_usable()
    try:
        blockdev.detect_throttle()
    except Unavailable as exc:
        unavailable(exc.reason)
    with blockdev.LoopFs(64 * MiB, name="t") as fs:
        path = os.path.join(fs.mountpoint, "f")
        fast = _timed_write(path, 8 * MiB)
        with blockdev.WriteThrottle(fs.majmin, 4 * MiB, name="t") as th:
            assert th.rules(), open(th.rule_file).read()
            if th.version == 2:
                slow = th.spawn([sys.executable, "-c",
                                 f"import tests.lab.test_blockdev as t; print(t._timed_write({path!r}, {8 * MiB}))"],
                                stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
                slow = float(slow.communicate(timeout=30)[0])
            else:
                # v1: writeback bios are charged to the root blkio group, whoever calls fsync
                slow = _timed_write(path, 8 * MiB)
            rule_file = th.rule_file
        # 8 MiB at 4 MiB/s: about 2 s (the throttle lets a first slice through at once)
        assert slow >= 1.4, slow
        assert slow < 10, slow
        assert fast < slow / 2, (fast, slow)
        assert th.rules() == []
        if th.version == 1:
            assert not [ln for ln in open(rule_file).read().splitlines() if ln.startswith(fs.majmin + " ")]
        # the device is fast again
        assert _timed_write(path, 8 * MiB) < slow / 2


@needs_root
def test_cleanup_stale_detaches_what_a_dead_run_left():
    _skip_unless_usable()
    dead = subprocess.Popen(["true"])
    dead.wait()
    d = tempfile.mkdtemp(prefix=f"ksight-lab-{dead.pid}-dirty-backlog-", dir=blockdev.WORK_BASE)
    dev = None
    version = None
    try:
        img, mnt = os.path.join(d, "img"), os.path.join(d, "mnt")
        with open(img, "wb") as f:
            f.truncate(32 * MiB)
        os.mkdir(mnt)
        dev = subprocess.run(["losetup", "--find", "--show", "--direct-io=on", img],
                             capture_output=True, text=True, check=True).stdout.strip()
        subprocess.run(["mkfs.ext4", "-q", dev], check=True, capture_output=True)
        subprocess.run(["mount", dev, mnt], check=True)
        with open(f"/sys/block/{os.path.basename(dev)}/dev") as f:
            mm = f.read().strip()
        try:
            version, mount = blockdev.detect_throttle()
        except Unavailable:
            pass
        if version == 1:
            rf = os.path.join(mount, "blkio.throttle.write_bps_device")
            with open(rf, "w") as f:
                f.write(f"{mm} {MiB}")
        assert dev in blockdev.stale_loops()
        removed = blockdev.cleanup_stale()
        assert any(r.startswith(dev + " ") for r in removed), removed
        assert _mounted(mnt) == []
        assert _backing(dev) != img
        if version == 1:
            assert not [ln for ln in open(rf).read().splitlines() if ln.startswith(mm + " ")]
        dev = None
    finally:
        if dev:  # the test failed half-way: undo by hand
            subprocess.run(["umount", "-l", os.path.join(d, "mnt")], capture_output=True)
            subprocess.run(["losetup", "-d", dev], capture_output=True)
        shutil.rmtree(d, ignore_errors=True)


@needs_root
def test_stale_loops_ignores_live_runs_and_foreign_devices():
    _skip_unless_usable()
    with blockdev.LoopFs(16 * MiB, name="live") as fs:
        # our own pid is alive: not stale
        assert fs.device not in blockdev.stale_loops()
        assert fs.device in blockdev.loop_devices()
