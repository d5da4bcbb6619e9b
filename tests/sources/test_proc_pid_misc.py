"""oom_score/oom_score_adj, cgroup and cmdline."""

import os

import pytest

from ksight.errors import ParseError
from ksight.fs import LiveRoot
from ksight.sources.proc_pid import cgroup, cmdline, oom
from tests.conftest import corpus_root, corpus_text


def test_cmdline():
    assert cmdline.read(corpus_root("procfs"), 26231) == ("vim", "test.go", "+10")
    assert cmdline.parse(b"") == ()  # kernel thread
    assert cmdline.parse("sshd: nathans@pts/0") == ("sshd: nathans@pts/0",)  # rewritten title
    assert cmdline.parse(b"a\0\xff\0") == ("a", "\ufffd")


def test_cgroup_v1_and_path_for():
    # PCP 2.6.32 capture: v1 only
    c = cgroup.parse(corpus_text("pcp", "unpacked", "procpid-2.6.32-root-001", "proc", "4931", "cgroup"))
    assert c.lines[0] == cgroup.CgroupLine(8, ("blkio",), "/")
    assert c.path_for("memory") == "/" and c.path_for("pids") is None and c.v2_path is None


def test_cgroup_v2_answers_for_any_controller():
    c = cgroup.parse(corpus_text("pcp", "unpacked", "procpid-5.5.7-root-007", "proc", "1309", "cgroup"))
    p = "/user.slice/user-1000.slice/user@1000.service/init.scope"
    assert c.path_for("memory") == p and c.path_for("cpu") == p


def test_cgroup_hybrid_prefers_v1():
    c = cgroup.parse("4:memory:/a\n1:name=systemd:/s\n0::/unified:x\n")
    assert c.path_for("memory") == "/a" and c.path_for("name=systemd") == "/s"
    assert c.path_for("io") == "/unified:x"  # only v2 has it; the path may hold ':'


@pytest.mark.parametrize("text", ["memory:/x", "x:memory:/y"])
def test_cgroup_malformed(text):
    with pytest.raises(ParseError):
        cgroup.parse(text)


def test_oom_live_matches_kernel_files():
    root = LiveRoot()
    info = oom.read_oom(root, os.getpid())
    with open(f"/proc/{os.getpid()}/oom_score_adj") as f:
        assert info.score_adj == int(f.read())
    assert 0 <= info.score <= 2000


def test_oom_parse():
    assert oom.parse("12\n", "-500\n") == oom.OomInfo(12, -500)
    with pytest.raises(ParseError):
        oom.parse("", "0")
