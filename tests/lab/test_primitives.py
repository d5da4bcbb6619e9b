"""The lab primitives on the live machine: a memory cgroup, a netns pair, a sysctl guard.

Each test checks the effect with something other than the code under test: /proc/PID/cgroup
for membership, the kernel's own accounting for limits, `ip netns list`, packets that really
cross the veth (a UDP echo), and /proc/sys read back directly.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.conftest import need_tool, needs_root

pytestmark = needs_root


def _memory_cgroup_line(pid: int) -> str:
    for line in open(f"/proc/{pid}/cgroup"):
        _, ctrls, path = line.rstrip("\n").split(":", 2)
        if "memory" in ctrls.split(",") or (ctrls == "" and line.startswith("0::")):
            if "memory" in ctrls.split(","):
                return path
    # cgroup v2 only
    for line in open(f"/proc/{pid}/cgroup"):
        if line.startswith("0::"):
            return line.rstrip("\n")[3:]
    raise AssertionError("no memory cgroup line")


def _leftovers() -> list[str]:
    from ksight.lab.cgroup import list_lab_groups
    from ksight.lab.netns import list_namespaces

    mine = str(os.getpid())
    return ([g for g in list_lab_groups() if f"-{mine}-" in g]
            + [n for n in list_namespaces() if n.startswith(f"ksl{mine}")])


@pytest.fixture(autouse=True)
def nothing_left():
    yield
    assert _leftovers() == []


def test_memory_controller_found_from_mountinfo():
    from ksight.lab.cgroup import find_memory_controller

    text = (
        "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
        "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
        "99 1 0:40 / /mnt/with\\040space rw - ext4 /dev/x rw\n"
    )
    # a cgroup2 mount that cannot be read (the fake path) is skipped; v1 memory is chosen
    text2 = text.replace("/sys/fs/cgroup/unified", "/nonexistent-ksight")
    assert find_memory_controller(text2) == (1, "/sys/fs/cgroup/memory", "/")


def test_cgroup_child_is_inside_and_limit_applies():
    from ksight.lab.cgroup import MemoryCgroup

    with MemoryCgroup("prim", max_bytes=64 << 20) as cg:
        assert os.path.isdir(cg.fs_path)
        assert cg.path.endswith(f"/ksight-lab-{os.getpid()}-prim")
        p = cg.spawn(["sleep", "30"])
        # the kernel's view of the child's memory cgroup, not ours
        assert _memory_cgroup_line(p.pid) == cg.path
        assert p.pid in cg.members()
        limit = "memory.max" if cg.version == 2 else "memory.limit_in_bytes"
        assert int(cg.read(limit)) == 64 << 20
        path = cg.fs_path
    assert not os.path.exists(path)
    assert p.returncode == -9  # killed by close(), by PID


def test_cgroup_removed_when_body_raises_and_add_pid():
    from ksight.lab.cgroup import MemoryCgroup

    other = subprocess.Popen(["sleep", "30"])  # not spawned by the group: must survive close()
    try:
        with pytest.raises(RuntimeError):
            with MemoryCgroup("boom", high_bytes=32 << 20) as cg:
                path = cg.fs_path
                cg.add_pid(other.pid)
                assert _memory_cgroup_line(other.pid) == cg.path
                if cg.version == 1:
                    assert int(cg.read("memory.soft_limit_in_bytes")) == 32 << 20
                    assert cg.notes and "soft_limit" in cg.notes[0]
                cg.spawn(["sleep", "30"])
                raise RuntimeError("body failed")
        assert not os.path.exists(path)
        assert other.poll() is None  # moved out, not killed
        assert _memory_cgroup_line(other.pid) != cg.path
    finally:
        other.kill()
        other.wait()


def test_cgroup_limit_really_reclaims():
    """A child that touches 96 MiB of page cache in a 32 MiB group is held at the limit."""
    from ksight.lab.cgroup import MemoryCgroup

    code = ("import os,sys\n"
            "fd=os.open(sys.argv[1],os.O_RDWR|os.O_CREAT,0o600)\n"
            "b=b'x'*(1<<20)\n"
            "for i in range(96): os.write(fd,b)\n"
            "os.close(fd)\n")
    import tempfile

    with tempfile.TemporaryDirectory(dir="/var/tmp") as d, MemoryCgroup("rc", max_bytes=32 << 20) as cg:
        p = cg.spawn([sys.executable, "-I", "-S", "-c", code, os.path.join(d, "f")])
        assert p.wait(timeout=30) == 0
        if cg.version == 1:
            assert int(cg.read("memory.max_usage_in_bytes")) <= 32 << 20
            assert int(cg.read("memory.failcnt")) > 0
        else:
            assert int(cg.read("memory.peak")) <= 32 << 20
            ev = dict(line.split() for line in cg.read("memory.events").splitlines())
            assert int(ev["max"]) > 0


def test_cleanup_stale_removes_dead_creators_group():
    from ksight.lab import cgroup

    version, mount, _ = cgroup.find_memory_controller()
    # a pid that surely is not alive: a child that has exited and been reaped
    p = subprocess.Popen(["true"])
    p.wait()
    dead = os.path.join(mount, f"ksight-lab-{p.pid}-stale")
    os.mkdir(dead)
    try:
        removed = cgroup.cleanup_stale()
        assert dead in removed
        assert not os.path.exists(dead)
    finally:
        if os.path.exists(dead):
            os.rmdir(dead)


UDP_ECHO = """
import socket,sys,time
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind((sys.argv[1],9999)); s.settimeout(0.2)
end=time.monotonic()+float(sys.argv[2])
while time.monotonic()<end:
    try: d,a=s.recvfrom(100)
    except socket.timeout: continue
    s.sendto(d,a)
"""

UDP_CLIENT = """
import socket,sys
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(float(sys.argv[3]))
n=int(sys.argv[2]); ok=0
for i in range(n):
    s.sendto(str(i).encode(),(sys.argv[1],9999))
    try:
        while True:
            d,_=s.recvfrom(100)
            if d==str(i).encode(): ok+=1; break
    except socket.timeout: pass
print(ok)
"""


def _echo_round_trips(n, count: int, timeout: float) -> int:
    srv = n.popen(n.b, [sys.executable, "-I", "-S", "-c", UDP_ECHO, n.addr_b, "20"])
    try:
        time.sleep(0.3)
        r = n.run(n.a, [sys.executable, "-I", "-S", "-c", UDP_CLIENT, n.addr_b, str(count), str(timeout)],
                  timeout=count * timeout + 10)
        assert r.returncode == 0, r.stderr
        return int(r.stdout)
    finally:
        srv.kill()
        srv.wait()


def test_netns_pair_connects_and_is_removed():
    from ksight.lab.netns import NetnsPair

    need_tool("ip", "iproute2, which .ci/run installs")

    with NetnsPair() as n:
        names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert n.a in names and n.b in names
        addrs = n.run(n.a, ["ip", "-4", "-o", "addr", "show", "dev", "ksla"], timeout=5).stdout
        assert "198.18.0.1/30" in addrs
        assert _echo_round_trips(n, 20, 1.0) == 20
        # TCP too: connect from a to a listener in b
        code = ("import socket,sys\n"
                "s=socket.create_connection((sys.argv[1],9998),timeout=3); s.sendall(b'hi'); "
                "print(s.recv(2).decode())")
        srv = n.popen(n.b, [sys.executable, "-I", "-S", "-c",
                            "import socket;l=socket.socket();l.setsockopt(socket.SOL_SOCKET,"
                            "socket.SO_REUSEADDR,1);l.bind(('198.18.0.2',9998));l.listen();"
                            "l.settimeout(10);c,_=l.accept();c.sendall(c.recv(2))"])
        time.sleep(0.3)
        r = n.run(n.a, [sys.executable, "-I", "-S", "-c", code, n.addr_b], timeout=10)
        assert r.stdout.strip() == "hi", r.stderr
        srv.wait(timeout=5)
        a, b = n.a, n.b
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert a not in names and b not in names


def test_netns_loss_really_loses_packets():
    from ksight.lab.netns import NetnsPair

    need_tool("ip", "iproute2, which .ci/run installs")
    need_tool("nft", "nftables, which .ci/run installs")

    with NetnsPair(loss_pct=30) as n:
        ok = _echo_round_trips(n, 60, 0.15)
        # per direction 30 %: a round trip survives with p = 0.49; 60 tries -> mean 29.4,
        # sd 3.9. Bounds at about 5 sd: a broken rule (0 % or 100 % loss) fails either way.
        assert 10 <= ok <= 50, ok
        dropped = n.dropped_packets()
        # nft's own counters: both directions lost packets, and every lost round trip shows up
        assert dropped[n.a] > 0 and dropped[n.b] > 0
        assert sum(dropped.values()) >= 60 - ok


def test_netns_delay_without_netem_is_refused_and_cleaned():
    from ksight.errors import Unavailable
    from ksight.lab.netns import NetnsPair

    need_tool("ip", "iproute2, which .ci/run installs")
    need_tool("tc", "iproute2")

    try:
        with NetnsPair(delay_ms=10):
            pass
    except Unavailable as exc:
        assert "netem" in str(exc)
    # either way, nothing is left (checked by the autouse fixture)


def test_sysctl_guard_restores_in_reverse_and_on_error():
    from ksight.lab.sysctl import SysctlGuard

    def rd(n):
        return open("/proc/sys/" + n.replace(".", "/")).read().strip()

    names = ["vm.dirty_background_bytes", "vm.dirty_background_ratio", "vm.dirty_bytes",
             "vm.dirty_ratio", "vm.swappiness"]
    before = {n: rd(n) for n in names}
    with pytest.raises(RuntimeError):
        with SysctlGuard() as g:
            g.set("vm.swappiness", 17)
            g.set("vm.swappiness", 18)  # second write: the saved value stays the original
            g.set("vm.dirty_background_bytes", 8 << 20)
            g.set("vm.dirty_bytes", 32 << 20)
            assert rd("vm.swappiness") == "18"
            assert rd("vm.dirty_bytes") == str(32 << 20)
            assert rd("vm.dirty_ratio") == "0"  # the kernel zeroes the partner
            assert g.saved["vm.swappiness"] == before["vm.swappiness"]
            raise RuntimeError("body failed")
    assert {n: rd(n) for n in names} == before


def test_sysctl_guards_take_turns(tmp_path):
    """A second guard waits for the first to restore before it saves anything."""
    import threading

    from ksight.lab import sysctl as S

    lock = str(tmp_path / "lock")
    orig = S.read_sysctl("vm.swappiness")
    seen = {}
    first = S.SysctlGuard(lock_path=lock)
    first.set("vm.swappiness", 11)

    def second():
        with S.SysctlGuard(lock_path=lock) as g:
            g.set("vm.swappiness", 12)
            seen["saved"] = g.saved["vm.swappiness"]

    t = threading.Thread(target=second)
    t.start()
    time.sleep(0.3)
    assert S.read_sysctl("vm.swappiness") == "11"  # the second guard is still waiting
    first.restore()
    t.join(10)
    assert seen["saved"] == orig  # it saved the real original, not the first guard's value
    assert S.read_sysctl("vm.swappiness") == orig


def test_sysctl_guard_killed_with_sigkill_is_recovered(tmp_path):
    """A lab run killed with -9 cannot restore; its journal lets the next guard (or `ksight lab
    cleanup`) put the sysctls back, as tuned recovers a crash mid-apply."""
    import signal
    import subprocess
    import sys

    from ksight.lab import sysctl as S

    lock = str(tmp_path / "lock")
    orig = S.read_sysctl("vm.swappiness")
    code = ("import sys, time\nfrom ksight.lab.sysctl import SysctlGuard\n"
            f"g = SysctlGuard(lock_path={lock!r})\ng.set('vm.swappiness', 13)\n"
            "print('set', flush=True)\ntime.sleep(60)\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "set"
        assert S.read_sysctl("vm.swappiness") == "13"
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert S.read_sysctl("vm.swappiness") == "13"  # nobody restored it
    g = S.SysctlGuard(lock_path=lock)
    g._lock()
    try:
        assert S.read_sysctl("vm.swappiness") == orig
        assert any("vm.swappiness" in r for r in g.recovered)
    finally:
        g.restore()
    assert not (tmp_path / "lock.json").exists()


def test_leftovers_judge_a_restore_against_the_next_lab_runs_journal(tmp_path, monkeypatch):
    """The next lab run takes the sysctl lock as soon as this one restores and may change the
    same sysctl at once: this run's restore is judged against the value that run found (its
    journal), not against its change. With no live owner, the journal and the value count."""
    import json
    import subprocess

    from ksight import lab
    from ksight.lab import sysctl

    journal = tmp_path / "journal.json"
    monkeypatch.setattr(sysctl, "JOURNAL_PATH", str(journal))
    monkeypatch.setattr(sysctl, "read_sysctl", lambda name: "5")  # the next run's change
    other = subprocess.Popen(["sleep", "30"])
    try:
        journal.write_text(json.dumps({"pid": other.pid, "saved": [["vm.dirty_ratio", "20"]]}))
        assert not [x for x in lab.leftovers(saved_sysctls={"vm.dirty_ratio": "20"}) if "sysctl" in x]
        assert [x for x in lab.leftovers(saved_sysctls={"vm.dirty_ratio": "30"}) if "sysctl" in x] \
            == ["sysctl vm.dirty_ratio = 20 (was 30)"]  # we did not put ours back
    finally:
        other.kill()
        other.wait()
    left = [x for x in lab.leftovers(saved_sysctls={"vm.dirty_ratio": "20"}) if "sysctl" in x]
    assert left == [f"sysctl journal {journal} (sysctls not yet restored)",
                    "sysctl vm.dirty_ratio = 5 (was 20)"]
