"""The watcher (rules on each window while recording) and its triggers (deep-evidence bundles)."""

from __future__ import annotations

import json
import os

import pytest

from ksight.diagnose.finding import Evidence, Finding, Subject
from ksight.errors import Unavailable, UsageError
from ksight.record import triggers
from ksight.record.watch import Watcher
from tests.conftest import corpus_text
from tests.record.test_episodes import T0, series


class FakeCapture:
    def __init__(self):
        self.calls = []

    def __call__(self, finding, bundle_dir, **kw):
        self.calls.append((finding.id, finding.subject, kw))
        path = os.path.join(bundle_dir, f"b{len(self.calls)}")
        os.makedirs(path)
        return path


def _feed(w: Watcher, snaps) -> list:
    fired = []
    for s in snaps:
        for f in w.feed(s):
            fired.append((s.taken_at - T0, f.id))
        w.wait(5)  # the fake capture is instant; a real one runs while sampling goes on
    return fired


def test_a_trigger_captures_once_per_rate_limit_period(tmp_path):
    # direct reclaim at 50 stalls/s from 100 s to 1000 s, judged every 10 s on the last 60 s
    snaps, _ = series(1200, stalls=lambda t: 50 if 100 < t <= 1000 else 0)
    cap = FakeCapture()
    w = Watcher(areas=["pagecache"], bundle_dir=str(tmp_path), rate_limit_s=600,
                capture_fn=cap)
    fired = _feed(w, snaps)
    reclaim = [t for t, r in fired if r == "pagecache.direct-reclaim"]
    assert reclaim and 100 < reclaim[0] <= 120
    assert reclaim[-1] >= 1000  # still fires while the last burst second is in the window
    # first firing, then once more when 600 s have passed, never between
    assert [c[0] for c in cap.calls] == ["pagecache.direct-reclaim"] * 2, cap.calls
    times = [b["at"] - T0 for b in w.bundles]
    assert times[0] == reclaim[0] and 600 <= times[1] - times[0] <= 610
    eps = [e for e in w.episodes if e.rule == "pagecache.direct-reclaim"]
    assert len(eps) == 1 and eps[0].bundle == w.bundles[0]["path"]


def test_trigger_restricts_which_rules_capture(tmp_path):
    snaps, _ = series(300, stalls=lambda t: 50 if t > 100 else 0)
    cap = FakeCapture()
    w = Watcher(areas=["pagecache", "tcp"], triggers={"tcp.retransmission-rate"},
                bundle_dir=str(tmp_path), capture_fn=cap)
    fired = _feed(w, snaps)
    assert any(r == "pagecache.direct-reclaim" for _, r in fired)  # judged and reported
    assert cap.calls == []  # but not captured: not a trigger
    w2 = Watcher(areas=["pagecache"], triggers={"pagecache.direct-reclaim"},
                 bundle_dir=str(tmp_path / "2"), capture_fn=cap)
    _feed(w2, snaps)
    assert [c[0] for c in cap.calls] == ["pagecache.direct-reclaim"]


def test_not_live_never_captures(tmp_path):
    snaps, _ = series(300, stalls=lambda t: 50 if t > 100 else 0)
    cap = FakeCapture()
    w = Watcher(areas=["pagecache"], bundle_dir=str(tmp_path), live=False, capture_fn=cap)
    assert _feed(w, snaps) and cap.calls == []


def test_an_unknown_trigger_is_a_usage_error():
    with pytest.raises(UsageError, match="no.such-rule"):
        Watcher(areas=["pagecache"], triggers={"no.such-rule"})


def test_a_failing_capture_does_not_stop_the_watcher(tmp_path):
    def boom(*a, **k):
        raise OSError("disk full")

    snaps, _ = series(300, stalls=lambda t: 50 if t > 100 else 0)
    w = Watcher(areas=["pagecache"], bundle_dir=str(tmp_path), capture_fn=boom)
    assert _feed(w, snaps)
    assert w.errors and "disk full" in w.errors[0]


# ---- bundles -------------------------------------------------------------------------------------
def _finding(rule: str, pid: int | None = None) -> Finding:
    return Finding(rule, rule.split(".")[0], "warning", "t", (Evidence("x", 1, "", "/proc/x"),),
                   "e", (), Subject(pid=pid, comm="leaky") if pid else None)


def test_a_growth_bundle_holds_the_process_smaps(tmp_path, monkeypatch):
    from ksight.fs import DirRoot

    smaps = corpus_text("procfs", "proc", "26231", "smaps")  # real kernel text
    tree = tmp_path / "tree"
    (tree / "proc" / "4242").mkdir(parents=True)
    (tree / "proc" / "4242" / "smaps").write_text(smaps)

    def no_trace(*a, **k):
        raise Unavailable("tracefs", "not in this test")

    monkeypatch.setattr(triggers, "_recipe", no_trace)
    out = triggers.capture(_finding("memory.leak-suspect", 4242), str(tmp_path / "b"),
                           root=DirRoot(str(tree)), at=T0)
    assert os.path.basename(out).endswith("memory.leak-suspect-pid4242")
    assert (tmp_path / "b" / os.path.basename(out) / "smaps-4242.txt").read_text() == smaps
    meta = json.loads(open(os.path.join(out, "bundle.json")).read())
    assert meta["rule"] == "memory.leak-suspect" and meta["subject"] == {"pid": 4242, "comm": "leaky"}
    assert meta["files"] == ["smaps-4242.txt"]
    assert meta["not_captured"] == [{"what": "trace mmap", "reason": "not in this test"}]
    # a process gone before the capture: said, not a traceback
    out2 = triggers.capture(_finding("memory.leak-suspect", 4343), str(tmp_path / "b"),
                            root=DirRoot(str(tree)), at=T0 + 1)
    meta2 = json.loads(open(os.path.join(out2, "bundle.json")).read())
    assert meta2["files"] == [] and meta2["not_captured"][0]["what"] == "/proc/4343/smaps"
    got = triggers.load_bundles(str(tmp_path / "b"))
    assert [(b["rule"], b["subject"].pid) for b in got] == [("memory.leak-suspect", 4242),
                                                            ("memory.leak-suspect", 4343)]


def test_load_bundle_stacks(tmp_path):
    from ksight.fs import DirRoot

    tree = tmp_path / "tree"
    for pid, state in ((77, "D"), (78, "S")):
        d = tree / "proc" / str(pid) / "task" / str(pid)
        d.mkdir(parents=True)
        (d / "stat").write_text(f"{pid} (worker {pid}) {state} 1 1 1 0 -1 4194560 0 0 0 0 0 0\n")
        (d / "stack").write_text("[<0>] io_schedule+0x42/0x70\n[<0>] folio_wait_bit+0x1/0x2\n")
        (d / "wchan").write_text("folio_wait_bit")
    out = triggers.capture(_finding("cpu.load-high"), str(tmp_path / "b"), root=DirRoot(str(tree)))
    text = open(os.path.join(out, "stacks.txt")).read()
    assert "pid 77 tid 77 (worker 77) wchan folio_wait_bit" in text and "io_schedule" in text
    assert "worker 78" not in text  # sleeping (S), not blocked (D)


def test_broken_bundles_are_skipped(tmp_path):
    (tmp_path / "half").mkdir()  # killed before bundle.json was written
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "bundle.json").write_text("{not json")
    assert triggers.load_bundles(str(tmp_path)) == []
    assert triggers.load_bundles(str(tmp_path / "absent")) == []


def test_prune_removes_the_oldest_first(tmp_path):
    for i in range(4):
        d = tmp_path / f"b{i}"
        d.mkdir()
        (d / "f").write_bytes(b"x" * 1000)
        os.utime(d, (1000 + i, 1000 + i))
    removed = triggers.prune(str(tmp_path), 2500, keep=str(tmp_path / "b3"))
    assert sorted(os.path.basename(p) for p in removed) == ["b0", "b1"]
    assert sorted(os.listdir(tmp_path)) == ["b2", "b3"]
    assert triggers.dir_bytes(str(tmp_path)) == 2000


def test_watched_pids_name_the_process_a_finding_follows(tmp_path):
    # the largest process grows 4 MiB/s from 20 s on: the recorder must keep it in its samples
    snaps, pid = series(90, leak=lambda t: 4096 * max(0, t - 20))
    w = Watcher(areas=["memory"], bundle_dir=str(tmp_path), live=False)
    assert w.watched_pids() == ()
    seen = set()
    for s in snaps:
        w.feed(s)
        seen.update(w.watched_pids())
    assert pid in seen


def test_a_restarted_watcher_keeps_the_rate_limit_of_the_bundles_on_disk(tmp_path, monkeypatch):
    def no_trace(*a, **k):
        raise Unavailable("tracefs", "not in this test")

    monkeypatch.setattr(triggers, "_recipe", no_trace)
    snaps, _ = series(300, stalls=lambda t: 50 if t > 100 else 0)
    first = Watcher(areas=["pagecache"], bundle_dir=str(tmp_path), rate_limit_s=600)
    _feed(first, snaps[:200])
    assert len(triggers.load_bundles(str(tmp_path))) == 1
    cap = FakeCapture()
    again = Watcher(areas=["pagecache"], bundle_dir=str(tmp_path), rate_limit_s=600, capture_fn=cap)
    _feed(again, snaps[200:])
    assert cap.calls == []  # the bundle taken 100 s earlier still counts
