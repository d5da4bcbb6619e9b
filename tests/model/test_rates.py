"""Rates are computed in one place; counters that go backwards are flagged, never negative."""

from __future__ import annotations

from ksight.model import HostInfo, Snapshot, Window, counter_delta, lookup
from ksight.sources.vmstat import Vmstat


def snap(t, up, counters, mono=None):
    return Snapshot(taken_at=t, monotonic=mono, uptime_s=up, host=HostInfo(),
                    sources={"vmstat": Vmstat(dict(counters))})


def test_counter_delta():
    assert counter_delta(5, 8).value == 3
    d = counter_delta(8, 5)
    assert d.value is None and d.reset
    assert counter_delta(None, 5).value is None and not counter_delta(None, 5).reset


def test_rate_prefers_monotonic_then_uptime_then_wall():
    a = snap(100.0, 50.0, {"pgfault": 0}, mono=10.0)
    b = snap(130.0, 60.0, {"pgfault": 100}, mono=12.0)
    assert Window(a, b).seconds == 2.0
    a2, b2 = snap(100.0, 50.0, {"pgfault": 0}), snap(130.0, 60.0, {"pgfault": 100})
    assert Window(a2, b2).seconds == 10.0
    assert Window(a2, b2).rate("vmstat", "counters.pgfault") == 10.0
    a3, b3 = snap(100.0, None, {}), snap(104.0, None, {})
    assert Window(a3, b3).seconds == 4.0


def test_reset_is_flagged_and_gives_no_rate():
    w = Window(snap(0, 10, {"pswpin": 1000}), snap(1, 11, {"pswpin": 3}))
    assert w.rate("vmstat", "counters.pswpin") is None
    assert ("vmstat", "counters.pswpin") in w.resets


def test_reboot_between_snapshots_gives_no_rates():
    w = Window(snap(0, 5000, {"pgfault": 10}), snap(1, 3, {"pgfault": 20}))
    assert w.rebooted
    assert w.delta("vmstat", "counters.pgfault") is None


def test_absent_counter_is_none_not_zero():
    w = Window(snap(0, 10, {"a": 1}), snap(1, 11, {"a": 2}))
    assert w.rate("vmstat", "counters.b") is None
    assert w.rate("missing_source", "x") is None


def test_callable_path():
    def total(v):
        return v.counters["x"] + v.counters["y"]

    w = Window(snap(0, 10, {"x": 1, "y": 1}), snap(1, 12, {"x": 5, "y": 7}))
    assert w.rate("vmstat", total) == 5.0


def test_lookup_paths():
    obj = {"groups": {"/a.b": {"n": [1, 2, 3]}}}
    assert lookup(obj, ("groups", "/a.b", "n", 2)) == 3
    assert lookup(obj, "groups.x") is None
    assert lookup({1: "one"}, "1") == "one"
