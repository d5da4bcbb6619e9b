"""The process scan's C path and the cyclic GC: no collection runs during a scan, the
collector's state is given back as it was (on, or off), and the objects made of plain values
(PidStat, PidStatus) are left out of the collector's bookkeeping yet equal the Python path's."""

from __future__ import annotations

import gc
import os

import pytest

from ksight.collect import processes as P
from ksight.fs import LiveRoot


def _need_c():
    if P._procscan is None:
        pytest.fail(f"ksight._procscan not built: {P.PROCSCAN_ERROR}")


@pytest.mark.parametrize("enabled", [True, False])
def test_gc_state_is_given_back(enabled, monkeypatch):
    _need_c()
    seen = []
    real = P._scan_c

    def spy(*a, **kw):
        seen.append(gc.isenabled())
        return real(*a, **kw)

    monkeypatch.setattr(P, "_scan_c", spy)
    (gc.enable if enabled else gc.disable)()
    try:
        procs, _ = P.scan(LiveRoot(), pids=[os.getpid()])
        assert gc.isenabled() is enabled
    finally:
        gc.enable()
    assert seen == [False]  # off while C read and built
    assert os.getpid() in procs


def test_gc_state_given_back_when_the_scan_raises(monkeypatch):
    _need_c()

    def boom(*a, **kw):
        raise RuntimeError("boom")

    monkeypatch.setattr(P, "_scan_c", boom)
    gc.enable()
    with pytest.raises(RuntimeError):
        P.scan(LiveRoot(), pids=[os.getpid()])
    assert gc.isenabled()


def test_untracked_objects_equal_the_python_paths():
    _need_c()
    me = os.getpid()
    c, _ = P.scan(LiveRoot(), pids=[me, 1])
    py, _ = P.scan(LiveRoot(), pids=[me, 1], c_path=False)
    p = c[me]
    assert type(p) is P.Process and gc.is_tracked(p)  # holds other objects: tracked
    assert not gc.is_tracked(p.stat) and not gc.is_tracked(p.status)  # plain values only
    # same fields as the Python path (which makes ordinary, tracked objects); the times of our
    # own process move between the two scans, so compare what does not
    q = py[me]
    assert (p.pid, p.comm, p.stat.starttime_ticks, p.status.uids if hasattr(p.status, "uids") else None) == \
        (q.pid, q.comm, q.stat.starttime_ticks, q.status.uids if hasattr(q.status, "uids") else None)
    assert set(p.__dict__) == set(q.__dict__)
    if 1 in c and 1 in py:
        assert c[1].stat.starttime_ticks == py[1].stat.starttime_ticks
