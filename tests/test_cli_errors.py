"""Bad input to the CLI gives one line on stderr and exit 3, never a traceback (and never 2,
which `ksight check` uses for "critical")."""

from __future__ import annotations

import json

import pytest

from ksight.cli.main import main
from ksight.store.capture import capture, open_capture
from tests.conftest import FIXTURES

CAP = FIXTURES / "captures" / "vm-6.18.tar.zst"


@pytest.mark.parametrize("argv", [
    ["check", "-i", "nan"], ["check", "-i", "inf"], ["check", "-i", "abc"], ["check", "-i", "-1"],
    ["check", "-i", "1", "--step", "5"], ["check", "--area", "nope"],
    ["sar", "-B", "nan"], ["sar", "-B", "inf", "1"], ["sar", "-B", "0"],
    ["capture", "-o", "/proc/ksight-x"], ["capture", "-o", "/nonexistent/dir/x.tar"],
    ["capture", "-o", "x", "-i", "nan"],
    ["capture", "-o", "/nonexistent-ksight/out.zip"], ["capture", "-o", "/nonexistent-ksight/o.tar.xz"],
    ["capture", "-o", "/"], ["capture", "-o", "/proc/self/status"],
    ["show", "--from", str(CAP), "--snapshot", "9"],
    ["check", "--from", "/nonexistent"],
])
def test_usage_and_input_errors_exit_3_with_one_line(argv, capsys):
    try:
        code = main(argv)  # returns the exit status ...
    except SystemExit as exc:  # ... or argparse exits with it
        code = exc.code
    assert code == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert [ln for ln in err.splitlines() if ln.startswith("ksight: ")]


@pytest.mark.parametrize("manifest", [
    "[]", '"x"', '{"format": "ksight-capture", "version": 1, "snapshots": "abc"}',
    '{"format": "ksight-capture", "version": 1, "snapshots": [{"taken_at": 1}]}',
    '{"format": "ksight-capture", "version": 1, "host": {"page_size": "big"}, "snapshots": []}',
    '{"format": "ksight-capture", "version": 1, "snapshots": [{"dir": "0000", "unavailable": [{"source": "x"}]}]}',
    '{"format": "ksight-capture", "version": 99, "snapshots": []}',
])
def test_malformed_manifest_is_a_clear_error(tmp_path, manifest, capsys):
    src = tmp_path / "src"
    capture(str(src), count=1, sources=["uptime", "meminfo"], processes=False, sockets=False)
    (src / "manifest.json").write_text(manifest)
    assert main(["check", "--from", str(src)]) == 3
    err = capsys.readouterr().err
    assert err.startswith("ksight: ") and "manifest.json" in err and "Traceback" not in err


def test_interrupted_capture_keeps_what_was_taken(tmp_path):
    out = tmp_path / "c"

    def progress(i, n, snap):
        if i == 2:
            raise KeyboardInterrupt

    m = capture(str(out), count=5, interval=0.1, sources=["uptime", "vmstat"], processes=False,
                sockets=False, progress=progress)
    assert m["interrupted"] and m["count"] == 2 and m["requested_count"] == 5
    cap = open_capture(str(out))
    assert len(cap.roots) == 2 and [x["dir"] for x in cap.metas] == ["0000", "0001"]


def test_replay_sees_the_uptime_that_was_read(tmp_path):
    # one read of proc/uptime per snapshot: the live value and the replayed one are the same
    out = tmp_path / "c"
    seen = []
    capture(str(out), count=1, sources=["uptime"], processes=True, sockets=False,
            progress=lambda i, n, s: seen.append(s.uptime_s))
    snap = next(open_capture(str(out)).snapshots(sources=["uptime"]))
    assert snap.uptime_s == seen[0]


def test_protect_of_a_missing_cgroup_exits_3(capsys):
    status = main(["pagecache", "--protect", "/ksight-no-such-group", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert status == 3
    assert any("not found" in n for n in doc["report"]["protect"]["notes"])


def test_capture_count_beyond_what_replay_reads_is_refused(tmp_path, capsys):
    from ksight.cli.main import main
    from ksight.fs.bundle import MAX_SNAPSHOTS

    out = tmp_path / "c.tar"
    assert main(["capture", "-o", str(out), "-c", str(MAX_SNAPSHOTS + 1)]) == 3
    assert "between 1 and" in capsys.readouterr().err and not out.exists()
