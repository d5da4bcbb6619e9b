import subprocess

import pytest

from ksight.errors import ParseError, Unavailable
from ksight.fs import DirRoot, LiveRoot
from ksight.sources import mounts
from tests.conftest import FIXTURES, corpus_root, corpus_text, need_tool


# the example line from the kernel's Documentation/filesystems/proc.rst (mountinfo section)
DOC_LINE = "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n"


def test_kernel_doc_example():
    m = mounts.parse(DOC_LINE).entries[0]
    assert m.root == "/mnt1"
    assert m.mount_point == "/mnt2"
    assert m.options == ("rw", "noatime")
    assert m.fstype == "ext3"
    assert m.source == "/dev/root"
    assert m.super_options == ("rw", "errors=continue")
    assert m.rel == "mnt2"


def test_no_optional_fields_and_several_optional_fields():
    text = ("1 0 0:1 / / rw - rootfs rootfs rw\n"
            "2 1 0:2 / /a rw shared:1 master:2 propagate_from:3 - tmpfs none rw\n")
    e = mounts.parse(text).entries
    assert [m.mount_point for m in e] == ["/", "/a"]
    assert e[1].fstype == "tmpfs" and e[1].source == "none"


def test_octal_escapes():
    text = r"27 22 0:45 / /mnt/my\040data\011x\134y rw - tmpfs my\040src rw" + "\n"
    m = mounts.parse(text).entries[0]
    assert m.mount_point == "/mnt/my data\tx\\y"
    assert m.source == "my src"


def test_pcp_proc_mounts_fallback():
    # pcp qa/linux cgroups-root-001/proc/mounts has no mountinfo beside it; the v1 memory
    # hierarchy line is "cgroup /cgroup/memory cgroup rw,relatime,memory 0 0"
    ms = mounts.read(corpus_root("pcp", "unpacked", "cgroups-root-001"))
    lines = corpus_text("pcp", "unpacked", "cgroups-root-001", "proc", "mounts").splitlines()
    assert len(ms.entries) == len([ln for ln in lines if ln.strip()])
    mem = ms.at("/cgroup/memory")
    assert mem is not None and mem.fstype == "cgroup" and "memory" in mem.all_options
    assert mem.root is None and mem.super_options == ()
    assert len(ms.by_fstype("cgroup")) == 8


def test_pcp_002_combined_controllers():
    ms = mounts.read(corpus_root("pcp", "unpacked", "cgroups-root-002"))
    m = ms.at("/sys/fs/cgroup/cpu,cpuacct")
    assert m is not None and {"cpu", "cpuacct"} <= m.all_options
    systemd = ms.at("/sys/fs/cgroup/systemd")
    assert "name=systemd" in systemd.options


def test_v2_fixture_mountinfo():
    ms = mounts.read(DirRoot(str(FIXTURES / "cgroup_v2")))
    assert [m.mount_point for m in ms.by_fstype("cgroup2")] == ["/sys/fs/cgroup"]
    assert ms.by_fstype("tracefs")[0].rel == "sys/kernel/tracing"
    assert ms.at("/mnt/my data").fstype == "tmpfs"


def test_missing_both_files(tmp_path):
    with pytest.raises(Unavailable):
        mounts.read(DirRoot(str(tmp_path)))


@pytest.mark.parametrize("text", [
    "", "\n",
    "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 ext3 /dev/root rw\n",  # no separator
    "36 35 98:0 /mnt1 /mnt2 rw,noatime - ext3\n",  # truncated after the separator
    "36 35 98:0 /mnt1\n",  # cut mid-line
    "garbage\n",
])
def test_malformed_mountinfo(text):
    with pytest.raises(ParseError) as ei:
        mounts.parse(text)
    assert ei.value.path == mounts.PATH


@pytest.mark.parametrize("text", ["", "cgroup /cgroup/memory cgroup\n"])
def test_malformed_proc_mounts(text):
    with pytest.raises(ParseError):
        mounts.parse_mounts(text)


def test_live_matches_findmnt():
    # findmnt (util-linux) reads the same mountinfo with its own parser; raw output escapes
    # blanks as \x20
    out = subprocess.run([need_tool("findmnt", "util-linux"), "-rn", "-o", "TARGET,FSTYPE"], capture_output=True,
                         text=True, check=True).stdout
    want = []
    for line in out.splitlines():
        target, fstype = line.split(" ")
        want.append((target.encode().decode("unicode_escape"), fstype))
    got = [(m.mount_point, m.fstype) for m in mounts.read(LiveRoot()).entries]
    assert sorted(got) == sorted(want)
