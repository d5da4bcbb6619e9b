"""The collector's live window: on schedule, bounded in memory on long windows, honest about it."""

from __future__ import annotations

import pytest

from ksight.cli.main import main
from ksight.collect.collector import Collector
from ksight.collect.plan import Needs, Plan

PLAN = Plan.of([Needs(sources=("loadavg",))])


def test_window_takes_the_snapshots_asked_for():
    c = Collector()
    snaps = c.window(PLAN, seconds=0.2, step=0.05)
    assert len(snaps) == 5 and c.step_used == 0.05
    gaps = [b.monotonic - a.monotonic for a, b in zip(snaps, snaps[1:])]
    assert all(0.03 < g < 0.2 for g in gaps), gaps


def test_long_window_is_thinned_evenly_and_keeps_its_end():
    c = Collector()
    c.MAX_KEPT = 8
    snaps = c.window(PLAN, seconds=1.0, step=0.02)  # 51 snapshots asked, at most 8 (+1) held
    assert len(snaps) <= c.MAX_KEPT + 1
    assert c.step_used == pytest.approx(0.16)
    t = [s.monotonic - snaps[0].monotonic for s in snaps]
    assert t[-1] == pytest.approx(1.0, abs=0.1)  # the window still ends at its end
    inner = [b - a for a, b in zip(t, t[1:-1])]
    assert all(abs(g - 0.16) < 0.06 for g in inner), t


def test_nonsense_windows_are_refused(capsys):
    for argv in (["check", "--interval", "1e9"], ["check", "--interval", "nan"],
                 ["check", "--step", "0.0001"], ["check", "--interval", "-3"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 3, argv
        assert "ksight:" in capsys.readouterr().err
