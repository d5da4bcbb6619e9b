"""trace.session.interruptible: the one Ctrl-C / SIGTERM helper of `ksight trace` and
`ksight leak --trace` (mmap.catch). A signal ends the wait early, the session is still left
(tracing off, instance removed), what was entered with it is stopped and left, the old handlers
come back. Fake sessions check the order of calls; a root test checks a real tracefs instance."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from ksight.errors import Unavailable
from ksight.trace.session import interruptible
from tests.conftest import needs_root


class FakeTrace:
    """What a session yields: wait() blocks until stop() (bounded: 10 s)."""

    def __init__(self, log, name, on_wait=None):
        self.log, self.name, self.on_wait = log, name, on_wait
        self._stop = threading.Event()

    def wait(self):
        self.log.append(f"{self.name}.wait")
        if self.on_wait:
            self.on_wait()
        self._stop.wait(10)
        self.log.append(f"{self.name}.waited:{'stopped' if self._stop.is_set() else 'timeout'}")

    def stop(self):
        self.log.append(f"{self.name}.stop")
        self._stop.set()


class FakeSession:
    def __init__(self, log, name="s", on_enter=None, on_wait=None, fail=None):
        self.log, self.name, self.on_enter, self.fail = log, name, on_enter, fail
        self.t = FakeTrace(log, name, on_wait)

    def __enter__(self):
        self.log.append(f"{self.name}.enter")
        if self.on_enter:
            self.on_enter()
        if self.fail:
            raise self.fail
        return self.t

    def __exit__(self, et, ev, tb):
        self.log.append(f"{self.name}.exit:{et.__name__ if et else None}")


def _kill_self(sig=signal.SIGINT, after=0.0):
    def go():
        os.kill(os.getpid(), sig)
    if after:
        threading.Timer(after, go).start()
    else:
        go()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_ends_the_wait_and_leaves_everything(sig):
    log: list = []
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    t0 = time.monotonic()
    with interruptible() as run:
        rec = run.enter(FakeSession(log, "perf"))
        t = run.trace(FakeSession(log, "s", on_wait=lambda: _kill_self(sig, after=0.2)))
        log.append("after trace")
    took = time.monotonic() - t0
    assert took < 5, took                     # the signal ended it, not the 10 s bound
    assert run.stopped.is_set()
    assert isinstance(t, FakeTrace) and isinstance(rec, FakeTrace)
    # both running things were told to stop; the session is left before trace() returns,
    # what enter() entered is left at the end of the block
    assert log == ["perf.enter", "s.enter", "s.wait", "perf.stop", "s.stop", "s.waited:stopped",
                   "s.exit:None", "after trace", "perf.exit:None"]
    assert {s: signal.getsignal(s) for s in before} == before


def test_signal_during_set_up_skips_the_wait_but_not_the_exit():
    log: list = []
    with interruptible() as run:
        t = run.trace(FakeSession(log, on_enter=_kill_self))
    assert log == ["s.enter", "s.exit:None"]  # no wait at all: the signal came first
    assert t.name == "s"


def test_without_a_signal_the_session_runs_its_course():
    log: list = []

    class Quick(FakeTrace):
        def wait(self):
            self.log.append("s.wait")

    s = FakeSession(log)
    s.t = Quick(log, "s")
    with interruptible() as run:
        run.trace(s)
    assert log == ["s.enter", "s.wait", "s.exit:None"]
    assert not run.stopped.is_set()


def test_an_error_while_waiting_leaves_the_session_with_it():
    log: list = []
    before = signal.getsignal(signal.SIGINT)

    def boom():
        raise RuntimeError("recipe bug")

    with pytest.raises(RuntimeError, match="recipe bug"):
        with interruptible() as run:
            run.enter(FakeSession(log, "perf"))
            run.trace(FakeSession(log, on_wait=boom))
    assert log == ["perf.enter", "s.enter", "s.wait", "s.exit:RuntimeError", "perf.exit:RuntimeError"]
    assert signal.getsignal(signal.SIGINT) is before


def test_fallback_when_the_session_is_unavailable():
    log: list = []
    first = FakeSession(log, "bpf", fail=Unavailable("bpftrace", "probe missing"))
    second = FakeSession(log, "tracefs")
    second.t.wait = lambda: log.append("tracefs.wait")
    asked = []

    def fallback(exc):
        asked.append(exc.reason)
        return second

    with interruptible() as run:
        t = run.trace(first, fallback=fallback)
    assert asked == ["probe missing"] and t is second.t
    assert log == ["bpf.enter", "tracefs.enter", "tracefs.wait", "tracefs.exit:None"]
    # without a fallback, Unavailable is the caller's
    with pytest.raises(Unavailable):
        with interruptible() as run:
            run.trace(FakeSession([], fail=Unavailable("tracefs", "needs root")))


def test_outside_the_main_thread_no_handler_is_touched():
    log: list = []
    got: dict = {}
    before = signal.getsignal(signal.SIGINT)

    def body():
        with interruptible() as run:
            got["old"] = dict(run._old)
            s = FakeSession(log, on_wait=lambda: threading.Timer(0.1, run.stop).start())
            got["t"] = run.trace(s)

    th = threading.Thread(target=body)
    th.start()
    th.join(15)
    assert not th.is_alive()
    assert got["old"] == {} and got["t"].name == "s"
    assert log[-2:] == ["s.waited:stopped", "s.exit:None"]
    assert signal.getsignal(signal.SIGINT) is before


@needs_root
@pytest.mark.root
def test_real_trace_sigint_removes_the_instance():
    from ksight.trace import tracefs
    from ksight.trace.session import trace

    mnt = tracefs.acquire()
    try:
        t0 = time.monotonic()
        with interruptible() as run:
            seen = {}

            def check_and_signal():
                seen["dir"] = os.path.join(mnt, "instances", run._live[-1].instance)
                seen["exists"] = os.path.isdir(seen["dir"])
                os.kill(os.getpid(), signal.SIGINT)

            sess = trace(["irq:softirq_entry"], seconds=30)
            orig_wait = None

            class Wrap:
                def __enter__(self):
                    nonlocal orig_wait
                    t = sess.__enter__()
                    orig_wait = t.wait
                    t.wait = lambda: (threading.Timer(0.3, check_and_signal).start(), orig_wait())
                    return t

                def __exit__(self, *exc):
                    return sess.__exit__(*exc)

            t = run.trace(Wrap())
        assert time.monotonic() - t0 < 15
        assert seen["exists"] and not os.path.exists(seen["dir"])
        assert t.ended and t.duration_s < 15
        assert tracefs.our_instances(mnt) == [] or all(
            not n.startswith(f"ksight-{os.getpid()}-") for n in tracefs.our_instances(mnt))
    finally:
        tracefs.release()
