"""What `ksight capture` writes, as root, where someone else may be waiting (issue 8: 1, 3, 4, 5).

An unprivileged user plants links at the output name, owns the output directory, or tries to get
into it while the capture runs; the capture must never write through them. Captures are readable
by their owner only, inside archives too. Archive-looking names ksight cannot write are refused.
A second Ctrl-C while an archive is finished leaves it whole or absent.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import tempfile
import time

import pytest

from ksight.cli.main import main
from ksight.errors import CaptureError
from ksight.store import capture as capmod
from ksight.store.capture import capture, open_capture

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates a user and acts "
                               "as root against links that user plants")
SMALL = dict(count=1, sources=["uptime", "meminfo"], processes=False, sockets=False)
NAMES = ["cap.tar", "cap.tar.gz", "cap.tar.zst", "capdir"]


@pytest.fixture
def user():
    """A real unprivileged user, removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create a user")
    name = f"ksight-sec-{os.getpid()}"
    subprocess.run(["useradd", "-M", "-s", "/usr/sbin/nologin", name], check=True,
                   capture_output=True)
    try:
        pw = pwd.getpwnam(name)
        yield pw.pw_uid, pw.pw_gid
    finally:
        subprocess.run(["userdel", name], capture_output=True)


def as_user(user, fn) -> int:
    """Run fn() in a forked child that dropped to `user`; its exit status (0: fn returned,
    13: PermissionError, 1: anything else)."""
    uid, gid = user
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            fn()
            code = 0
        except PermissionError:
            code = 13
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@pytest.fixture
def shared():
    """A /tmp-like directory (1777) the user can reach (pytest's tmp_path is root-only), and a
    root-only place standing for /etc; both removed afterwards."""
    base = tempfile.mkdtemp(prefix="ksight-sec-")
    try:
        os.chmod(base, 0o755)
        pub = os.path.join(base, "tmp")
        os.mkdir(pub)
        os.chmod(pub, 0o1777)
        etc = os.path.join(base, "etc")
        os.mkdir(etc, 0o755)
        yield pub, etc
    finally:
        shutil.rmtree(base)


@root_only
@pytest.mark.parametrize("name", NAMES)
def test_dangling_link_planted_by_another_user_is_not_followed(user, shared, name):
    pub, etc = shared
    out, victim = os.path.join(pub, name), os.path.join(etc, "pwned")
    assert as_user(user, lambda: os.symlink(victim, out)) == 0
    with pytest.raises(CaptureError, match="symbolic link"):
        capture(out, **SMALL)
    assert not os.path.lexists(victim)
    assert os.readlink(out) == victim and sorted(os.listdir(pub)) == [name]  # no temp left


@root_only
@pytest.mark.parametrize("name", NAMES)
def test_link_to_an_existing_file_or_dir_is_not_followed(user, shared, name):
    pub, etc = shared
    victim = os.path.join(etc, "passwd")
    with open(victim, "w") as f:
        f.write("root:x:0:0\n")
    os.mkdir(os.path.join(etc, "d"))
    out = os.path.join(pub, name)
    assert as_user(user, lambda: os.symlink(victim if "." in name else os.path.join(etc, "d"),
                                            out)) == 0
    with pytest.raises(CaptureError):
        capture(out, **SMALL)
    assert open(victim).read() == "root:x:0:0\n" and os.listdir(os.path.join(etc, "d")) == []


@root_only
def test_cli_refuses_a_planted_link_with_one_line(user, shared, capsys):
    pub, etc = shared
    out = os.path.join(pub, "cap.tar")
    assert as_user(user, lambda: os.symlink(os.path.join(etc, "pwned"), out)) == 0
    assert main(["capture", "-o", out, "--no-processes", "--no-sockets"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("ksight: ") and "Traceback" not in err and len(err.splitlines()) == 1
    assert not os.path.lexists(os.path.join(etc, "pwned"))


@root_only
def test_directory_owned_by_another_user_is_refused(user, shared):
    pub, etc = shared
    out = os.path.join(pub, "capdir")
    assert as_user(user, lambda: os.mkdir(out, 0o755)) == 0
    with pytest.raises(CaptureError, match="owned by uid"):
        capture(out, **SMALL)
    assert os.listdir(out) == []


def test_directory_others_can_write_to_is_refused(tmp_path):
    out = tmp_path / "capdir"
    out.mkdir()
    out.chmod(0o777)
    with pytest.raises(CaptureError, match="others can write"):
        capture(str(out), **SMALL)
    assert list(out.iterdir()) == []


def test_an_empty_private_directory_of_ours_is_taken_and_made_0700(tmp_path):
    out = tmp_path / "capdir"
    out.mkdir(mode=0o755)
    capture(str(out), **SMALL)
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert len(open_capture(str(out)).roots) == 1


@root_only
def test_other_user_cannot_plant_links_inside_a_running_directory_capture(user, shared):
    pub, etc = shared
    out = os.path.join(pub, "capdir")
    tries = []

    def progress(i, n, snap):
        if i == 1:  # snapshot 0000 is written; 0001 is next
            tries.append(as_user(user, lambda: os.symlink(etc, os.path.join(out, "0001"))))
            tries.append(as_user(user, lambda: os.listdir(out)))

    capture(out, interval=0.05, count=2, sources=["uptime"], processes=False, sockets=False,
            progress=progress)
    assert tries == [13, 13]  # permission denied: the directory is root's, 0700
    assert os.listdir(etc) == []
    assert len(open_capture(out).roots) == 2


@root_only
def test_a_swapped_path_component_does_not_redirect_writes(shared):
    # the directory is renamed away and a link to another place put at its name mid-capture
    # (what the owner of a parent directory could do): writes go on through the fds held open
    pub, etc = shared
    out, moved = os.path.join(pub, "capdir"), os.path.join(pub, "moved")

    def progress(i, n, snap):
        if i == 1:
            os.rename(out, moved)
            os.symlink(etc, out)

    capture(out, interval=0.05, count=3, sources=["uptime"], processes=False, sockets=False,
            progress=progress)
    assert os.listdir(etc) == []
    assert sorted(os.listdir(moved)) == ["0000", "0001", "0002", "manifest.json"]


@root_only
def test_a_link_planted_at_the_archive_name_while_capturing_is_not_replaced(user, shared):
    pub, etc = shared
    out, victim = os.path.join(pub, "cap.tar.zst"), os.path.join(etc, "pwned")

    def progress(i, n, snap):
        assert as_user(user, lambda: os.symlink(victim, out)) == 0

    with pytest.raises(CaptureError, match="someone else"):
        capture(out, progress=progress, **SMALL)
    assert os.readlink(out) == victim and not os.path.lexists(victim)
    assert os.listdir(pub) == ["cap.tar.zst"]


# --- modes ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_captures_are_readable_by_their_owner_only(tmp_path, name):
    out = tmp_path / name
    old = os.umask(0)  # even with a permissive umask
    try:
        capture(str(out), interval=0.05, count=2, sources=["uptime", "meminfo", "slabinfo"],
                processes=True, sockets=True)
    finally:
        os.umask(old)
    if name == "capdir":
        for dirpath, dirs, files in os.walk(out):
            for n in [dirpath] + [os.path.join(dirpath, f) for f in files]:
                mode = os.lstat(n).st_mode
                if stat.S_ISLNK(mode):
                    continue  # a link's own mode is always 0777 on Linux and grants nothing
                assert stat.S_IMODE(mode) & 0o077 == 0, (n, oct(mode))
    else:
        assert stat.S_IMODE(out.stat().st_mode) == 0o600
        if name.endswith(".zst"):
            import zstandard

            with open(out, "rb") as f, zstandard.ZstdDecompressor().stream_reader(f) as r, \
                    tarfile.open(fileobj=r, mode="r|") as tar:
                modes = [(m.name, m.mode) for m in tar]
        else:
            with tarfile.open(out) as tar:
                modes = [(m.name, m.mode) for m in tar.getmembers()]
        assert modes and all(mode & 0o077 == 0 for _, mode in modes), modes
    assert len(open_capture(str(out)).roots) == 2


# --- names ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["out.zip", "out.tar.bz2", "out.tar.xz", "out.7z", "out.txz",
                                  "out.gz", "OUT.ZIP", "out.rar", "out.tar.lz4"])
def test_archive_names_ksight_cannot_write_are_refused(tmp_path, name):
    with pytest.raises(CaptureError) as exc:
        capture(str(tmp_path / name), **SMALL)
    assert ".tar.zst" in str(exc.value) and ".tar.gz" in str(exc.value)
    assert list(tmp_path.iterdir()) == []


def test_cli_refuses_zip_with_the_supported_list(tmp_path, capsys):
    assert main(["capture", "-o", str(tmp_path / "out.zip")]) == 3
    err = capsys.readouterr().err
    assert err.startswith("ksight: ") and ".tar.zst" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["cap.tar", "cap.tar.gz", "cap.tar.zst"])
def test_an_existing_file_is_never_overwritten(tmp_path, name):
    (tmp_path / name).write_text("keep me")
    with pytest.raises(CaptureError, match="exists"):
        capture(str(tmp_path / name), **SMALL)
    assert (tmp_path / name).read_text() == "keep me" and len(list(tmp_path.iterdir())) == 1


# --- Ctrl-C ---------------------------------------------------------------------------------------

def _stop_at(i_stop):
    def progress(i, n, snap):
        if i == i_stop:
            raise KeyboardInterrupt
    return progress


@pytest.mark.parametrize("name", ["cap.tar", "cap.tar.zst", "capdir"])
def test_interrupted_capture_keeps_a_usable_partial_result(tmp_path, name):
    out = str(tmp_path / name)
    m = capture(out, interval=0.05, count=5, sources=["uptime", "vmstat"], processes=False,
                sockets=False, progress=_stop_at(2))
    assert m["interrupted"] and m["count"] == 2
    assert len(open_capture(out).roots) == 2
    assert sorted(os.listdir(tmp_path)) == [name]  # no temporary file left


@pytest.mark.parametrize("where", ["_close_archive", "rename"])
@pytest.mark.parametrize("name", ["cap.tar", "cap.tar.gz", "cap.tar.zst"])
def test_second_ctrl_c_while_finishing_leaves_no_archive(tmp_path, monkeypatch, name, where):
    out = tmp_path / name
    if where == "rename":
        def boom(*a):
            raise KeyboardInterrupt
        monkeypatch.setattr(capmod, "_rename_noreplace", boom)
    else:
        real = capmod._Writer._close_archive

        def half(self):  # the tar end is written, the compressor not flushed: a torn archive
            self.tar.close()
            self.tar = None
            raise KeyboardInterrupt
        monkeypatch.setattr(capmod._Writer, "_close_archive", half)
        assert real
    with pytest.raises(KeyboardInterrupt):
        capture(str(out), interval=0.05, count=3, sources=["uptime"], processes=False,
                sockets=False, progress=_stop_at(1))
    assert list(tmp_path.iterdir()) == []


def test_real_sigints_leave_a_valid_archive_or_nothing(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    results = []
    for k, (first, second) in enumerate([(0.6, 0.0), (0.6, 0.005), (0.8, 0.02), (1.0, 0.05)]):
        out = tmp_path / f"c{k}.tar.zst"
        p = subprocess.Popen([sys.executable, "-m", "ksight", "capture", "-o", str(out),
                              "--count", "100", "--interval", "0.01", "--no-sockets"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(first)
        p.send_signal(signal.SIGINT)
        time.sleep(second)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
        assert b"Traceback" not in err, err
        if out.exists():
            assert len(open_capture(str(out)).roots) >= 1
        results.append(out.exists())
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".part")]


def test_ctrl_c_in_the_middle_of_an_archive_member_never_corrupts_the_archive(tmp_path, monkeypatch):
    """A SIGINT that lands while a member's data is being written (the header already in the
    stream) used to leave a member shorter than its header: `tar` then read garbage and the
    archive was cut after it, yet it was put in place as the capture (seen in CI). Signals now
    wait until the snapshot is whole: the archive opens and lists the complete snapshots."""
    import tarfile as _tarfile

    from ksight.store.capture import capture

    real = _tarfile.copyfileobj
    calls = {"n": 0}

    def copy_then_interrupt(src, dst, length=None, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 40 and length:  # the 40th member: half its data, then the signal
            data = src.read(length)
            dst.write(data[: len(data) // 2])
            os.kill(os.getpid(), signal.SIGINT)
            dst.write(data[len(data) // 2:])
            return
        return real(src, dst, length, *a, **kw)

    monkeypatch.setattr(_tarfile, "copyfileobj", copy_then_interrupt)
    out = tmp_path / "c.tar.zst"
    m = capture(str(out), count=3, interval=0.01, sockets=False)
    assert calls["n"] > 40
    assert m["interrupted"] is True and m["count"] >= 1
    cap = open_capture(str(out))  # opens: no member cut short
    assert len(cap.roots) == m["count"]
    assert next(cap.snapshots(sources=["meminfo"])).get("meminfo") is not None
