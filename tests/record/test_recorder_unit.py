"""contrib/ksight-record.service: systemd accepts it, it runs the recorder with what the recorder
needs (StateDirectory gives $STATE_DIRECTORY, where the recorder writes by default), and it keeps
the network (sock_diag) and /dev/kmsg reachable."""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
from pathlib import Path

from ksight.record.store import Recording
from tests.conftest import need_tool

UNIT = Path(__file__).resolve().parents[2] / "contrib" / "ksight-record.service"


def _unit() -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None, comment_prefixes=("#", ";"))
    cp.optionxform = str
    cp.read(UNIT)
    return cp


def test_unit_settings():
    s = _unit()["Service"]
    assert s["StateDirectory"] == "ksight"
    assert s["Restart"] == "on-failure"
    assert s["IOSchedulingClass"] == "idle" and int(s["Nice"]) > 0
    assert " record " in s["ExecStart"] + " "
    # what would break the recorder: no network namespace of its own, /dev/kmsg, /proc of all
    for key in ("PrivateNetwork", "ProtectKernelLogs", "ProtectProc", "ProcSubset", "PrivateUsers"):
        assert key not in s, key
    assert "AF_NETLINK" in s["RestrictAddressFamilies"]
    assert "net" in s["RestrictNamespaces"].split()
    assert "CAP_SYS_PTRACE" in s["CapabilityBoundingSet"]  # other users' /proc/PID/fd and smaps
    assert _unit()["Install"]["WantedBy"] == "multi-user.target"


def test_systemd_accepts_the_unit(tmp_path):
    tool = need_tool("systemd-analyze", "checks the unit file")
    unit = tmp_path / "ksight-record.service"
    ksight = Path(sys.executable).with_name("ksight")
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/ksight", str(ksight)))
    r = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == "", r.stderr


def test_records_into_state_directory(tmp_path):
    """As systemd starts it: no --db, STATE_DIRECTORY set."""
    env = dict(os.environ, STATE_DIRECTORY=str(tmp_path))
    r = subprocess.run([sys.executable, "-m", "ksight", "record", "--seconds", "0.5", "--interval", "0.25"],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    with Recording.open(tmp_path / "ksight.db") as rec:
        assert rec.count() >= 2
