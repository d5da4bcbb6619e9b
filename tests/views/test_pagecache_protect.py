"""`ksight pagecache --protect`: typed actions whose cgroup files are under the mount point the
kernel reports, wherever cgroup2 is mounted (never an assumed /sys/fs/cgroup)."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout

from ksight.cli.main import main
from tests.conftest import corpus

MOUNT = "/srv/odd place/cg2"  # mountinfo escapes the space as \040
MIB = 2**20


def _tree(tmp_path, *, low_parent: int = 0):
    (tmp_path / "proc" / "self").mkdir(parents=True)
    (tmp_path / "proc" / "meminfo").write_text(corpus("node_exporter", "proc", "meminfo").read_text())
    (tmp_path / "proc" / "self" / "mountinfo").write_text(
        "24 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
        "35 24 0:30 / /srv/odd\\040place/cg2 rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 "
        "cgroup2 rw,nsdelegate\n")
    top = tmp_path / MOUNT.lstrip("/")
    top.mkdir(parents=True)
    (top / "cgroup.controllers").write_text("cpu io memory pids\n")
    parent = top / "app.slice"
    grp = parent / "web.service"
    grp.mkdir(parents=True)
    for d, cur, low in ((parent, 300 * MIB, low_parent), (grp, 250 * MIB, 0)):
        (d / "memory.current").write_text(f"{cur}\n")
        (d / "memory.min").write_text("0\n")
        (d / "memory.low").write_text(f"{low}\n")
        (d / "memory.high").write_text("max\n")
        (d / "memory.max").write_text(f"{260 * MIB}\n" if d is grp else "max\n")
    # 100 MiB of page cache (40 MiB active), 50 MiB anon
    (grp / "memory.stat").write_text(
        f"anon {50 * MIB}\nfile {100 * MIB}\nactive_file {40 * MIB}\ninactive_file {60 * MIB}\n")
    (parent / "memory.stat").write_text(f"anon {60 * MIB}\nfile {120 * MIB}\n")
    return tmp_path


def _run(*argv):
    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = main(list(argv))
    return rc, buf.getvalue()


def test_protect_paths_under_an_unusual_cgroup2_mount(tmp_path):
    root = _tree(tmp_path)
    rc, out = _run("pagecache", "--from", str(root), "--protect", "/app.slice/web.service", "--json")
    assert rc == 0
    p = json.loads(out)["report"]["protect"]
    assert p["version"] == 2 and p["cgroup_dir"] == f"{MOUNT}/app.slice/web.service"
    writes = {a["path"]: a for a in p["actions"] if a["kind"] == "cgroup"}
    grp = f"{MOUNT}/app.slice/web.service"
    # memory.low = (anon 50 + file 100 MiB) * 1.1 = 165 MiB, rounded up to a MiB (by hand)
    assert writes[f"{grp}/memory.low"]["recommended"] == str(165 * MIB)
    assert writes[f"{grp}/memory.low"]["current"] == "0"
    # memory.min = anon 50 + active file 40 MiB
    assert writes[f"{grp}/memory.min"]["recommended"] == str(90 * MIB)
    # the parent's memory.low (0 here) caps the child's: raise it too, under the same mount
    assert writes[f"{MOUNT}/app.slice/memory.low"]["recommended"] == str(165 * MIB)
    # usage 250 MiB is within 10% of memory.max 260 MiB: raise it, 25% above the usage
    assert writes[f"{grp}/memory.max"]["recommended"] == str(313 * MIB)  # 312.5 MiB, rounded up
    assert all(a["path"].startswith(MOUNT + "/") for a in writes.values())
    assert not any("/sys/fs/cgroup" in json.dumps(a) for a in p["actions"])
    kinds = {a["kind"] for a in p["actions"]}
    assert {"cgroup", "command", "code"} <= kinds  # systemctl set-property; mlock / fadvise
    assert any(a["kind"] == "command" and a["text"] == f"systemctl set-property web.service "
               f"MemoryLow={165 * MIB}" for a in p["actions"])
    # format-1 scripts still get one line per action
    assert len(p["advice"]) == len(p["actions"])


def test_protect_parent_already_protected_is_left_alone(tmp_path):
    root = _tree(tmp_path, low_parent=200 * MIB)
    rc, out = _run("pagecache", "--from", str(root), "--protect", "/app.slice/web.service", "--json")
    paths = [a["path"] for a in json.loads(out)["report"]["protect"]["actions"] if a["kind"] == "cgroup"]
    assert f"{MOUNT}/app.slice/memory.low" not in paths


def test_protect_text_shows_the_writes(tmp_path):
    root = _tree(tmp_path)
    rc, out = _run("pagecache", "--from", str(root), "--protect", "/app.slice/web.service")
    assert rc == 0
    assert f"memory cgroup /app.slice/web.service (v2)  at {MOUNT}/app.slice/web.service" in out
    # the path has a space: quoted, so the line can be pasted into a shell
    assert (f"memory.low = 165.0 MiB: echo {165 * MIB} > '{MOUNT}/app.slice/web.service/memory.low'"
            in out)
    assert "$ systemctl set-property web.service" in out
