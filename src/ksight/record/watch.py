"""The watcher: the rules on each window while recording, and the triggers that capture evidence.

    w = Watcher(areas=None, triggers={"memory.leak-suspect"}, bundle_dir="/var/lib/ksight/b")
    for snap in samples:                  # the recorder calls feed after storing each sample
        findings = w.feed(snap)           # the findings of the window judged now ([] between)
    w.close()                             # waits for a capture still running (bounded)

`feed` keeps the samples of the last `window_seconds` (default 60 s) and, every `every_seconds`
(default 10 s) of sample time, runs the rules on them, as `ksight report` judges a window: every
rule on one sample in ten, then at full resolution the rules that fired and those whose declared
counters burst (record/episodes.judge_window; `exact=True`: every rule at full resolution). A
judgement costs the sampling loop tens of ms (hundreds with `exact` and ~1,000 processes).
When a finding is at warning or above, its rule is in `triggers` (None: every rule) and the
watcher is `live`, a deep-evidence bundle is captured right then (record/triggers.py: the rule's
trace recipe for a few seconds, smaps of the process it names, D-state stacks):
- in a thread of its own, one capture at a time, so sampling never waits for it (a finding
  that fires while a capture runs is not captured: `skipped` counts it);
- at most once per `rate_limit_s` (default 600 s) per rule and subject;
- the bundle directory is kept under `max_bundle_bytes` (oldest bundles removed first);
- tracing is left off: the recipes' sessions switch it off and remove their instance on exit.
Episodes live as the recorder sees them are in `episodes` (the same merge as `ksight report`),
each with the bundle captured for it.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Iterable

from ..diagnose.finding import Finding, severity_rank
from ..model.series import find_break
from ..model.snapshot import Snapshot
from .episode import Episode
from .episodes import COARSE_EVERY, _declared, _Judge, clock, judge_window, merge, subject_key
from .triggers import CAPTURE_SECONDS, capture, prune

WINDOW_S = 60.0
EVERY_S = 10.0
RATE_LIMIT_S = 600.0
MAX_BUNDLE_BYTES = 256 << 20
TRIGGER_SEVERITY = "warning"
MAX_HITS = 20_000  # findings kept for `episodes` (the oldest go first)


class Watcher:
    def __init__(self, areas: Iterable[str] | None = None, triggers: set[str] | None = None,
                 bundle_dir: str | None = None, live: bool = True,
                 rate_limit_s: float = RATE_LIMIT_S, max_bundle_bytes: int = MAX_BUNDLE_BYTES,
                 window_seconds: float = WINDOW_S, every_seconds: float = EVERY_S,
                 capture_seconds: float = CAPTURE_SECONDS, capture_fn=None, root=None,
                 exact: bool = False, coarse_every: int = COARSE_EVERY):
        from ..diagnose.engine import load_rules

        self.rules = load_rules(areas)
        known = {r.id for r in self.rules}
        if triggers is not None:
            from ..errors import UsageError

            bad = sorted(set(triggers) - known)
            if bad:
                raise UsageError(f"--trigger: unknown rule(s) {', '.join(bad)} (of the selected "
                                 f"areas; `ksight check --rules` lists them)")
        self.triggers = None if triggers is None else set(triggers)
        self.bundle_dir = bundle_dir
        self.live = live
        self.rate_limit_s = rate_limit_s
        self.max_bundle_bytes = max_bundle_bytes
        self.window_seconds = window_seconds
        self.every_seconds = every_seconds
        self.capture_seconds = capture_seconds
        self._capture = capture_fn or capture
        self._root = root
        self._judge = _Judge(self.rules)
        self.exact, self.coarse_every = exact, coarse_every
        self._counters = {} if exact else _declared(self.rules)
        self._buf: deque[Snapshot] = deque()
        self._last_judged: float | None = None
        self._last_capture: dict[tuple, float] = {}  # (rule, subject key) -> time captured
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._hits: list[tuple[int, float, float, Finding]] = []
        self._index = 0
        self.bundles: list[dict] = []  # {rule, subject, at, path}
        self.skipped = 0  # findings that fired while a capture was running
        self.errors: list[str] = []
        self._last_found: list[Finding] = []
        # a recorder restarted keeps the rate limit: the bundles already on disk count
        if bundle_dir:
            from .triggers import load_bundles

            for b in load_bundles(bundle_dir):
                key = (b["rule"], subject_key(b["subject"]))
                self._last_capture[key] = max(self._last_capture.get(key, b["at"]), b["at"])

    # ---- sampling side -----------------------------------------------------------------------
    def feed(self, snap: Snapshot) -> list[Finding]:
        """Add one sample; when a window is due, judge it and return its findings."""
        t = clock(snap)
        if t is None:
            return []
        if self._buf and find_break(self._buf[-1], snap) is not None:
            self._buf.clear()  # a reboot or another host: the window starts again
            self._last_judged = None
        if self._buf and t <= clock(self._buf[-1]):
            return []
        self._buf.append(snap)
        while self._buf and clock(self._buf[0]) < t - self.window_seconds - 1e-6:
            self._buf.popleft()
        if self._last_judged is None:
            self._last_judged = t
            return []
        if t - self._last_judged < self.every_seconds - 1e-6 or len(self._buf) < 2:
            return []
        self._last_judged = t
        snaps = list(self._buf)
        found, _ = judge_window(self._judge, snaps, self.rules, exact=self.exact,
                                coarse_every=self.coarse_every, counters=self._counters)
        self._last_found = found
        ws = clock(snaps[0])
        idx = self._index
        self._index += 1
        for f in found:
            self._hits.append((idx, ws, t, f))
        if len(self._hits) > MAX_HITS:  # a day of a finding on every window stays bounded
            del self._hits[: len(self._hits) - MAX_HITS]
        for f in found:
            self._maybe_capture(f, t)
        return found

    # ---- triggers ----------------------------------------------------------------------------
    def _maybe_capture(self, f: Finding, t: float) -> None:
        if not self.live or self.bundle_dir is None:
            return
        if severity_rank(f.severity) < severity_rank(TRIGGER_SEVERITY):
            return
        if self.triggers is not None and f.id not in self.triggers:
            return
        key = (f.id, subject_key(f.subject))
        last = self._last_capture.get(key)
        if last is not None and t - last < self.rate_limit_s:
            return
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                self.skipped += 1
                return
            self._last_capture[key] = t
            self._thread = threading.Thread(target=self._take, args=(f, t), daemon=True,
                                            name=f"ksight-trigger-{f.id}")
            self._thread.start()

    def _take(self, f: Finding, t: float) -> None:
        try:
            os.makedirs(self.bundle_dir, mode=0o700, exist_ok=True)
            kw = {"seconds": self.capture_seconds, "at": t}
            if self._root is not None:
                kw["root"] = self._root
            path = self._capture(f, self.bundle_dir, **kw)
            with self._lock:
                self.bundles.append({"rule": f.id, "subject": f.subject, "at": t, "path": path})
            removed = prune(self.bundle_dir, self.max_bundle_bytes, keep=path)
            if removed:
                with self._lock:
                    gone = set(removed)
                    self.bundles = [b for b in self.bundles if b["path"] not in gone]
        except Exception as exc:  # a failed capture must never stop the recorder
            self.errors.append(f"{f.id}: capture failed: {type(exc).__name__}: {exc}")

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a capture in progress; True when none is running any more."""
        th = self._thread
        if th is not None:
            th.join(timeout)
            return not th.is_alive()
        return True

    def close(self, timeout: float = 30.0) -> None:
        self.wait(timeout)

    def watched_pids(self) -> tuple[int, ...]:
        """The processes the last judged window's findings name: the recorder keeps them in
        its samples (beside the largest and busiest), so the report can judge them later."""
        return tuple(dict.fromkeys(f.subject.pid for f in self._last_found
                                   if f.subject is not None and f.subject.pid))

    # ---- what it saw -------------------------------------------------------------------------
    @property
    def episodes(self) -> list[Episode]:
        """The windows judged so far, merged into episodes (with their bundles)."""
        with self._lock:
            bundles = list(self.bundles)
        return merge(self._hits, bundles)


__all__ = ["Watcher", "WINDOW_S", "EVERY_S", "RATE_LIMIT_S", "MAX_BUNDLE_BYTES"]
