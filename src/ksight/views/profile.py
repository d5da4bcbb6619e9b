"""`ksight profile` (and its alias `ksight trace profile`): what the CPUs run, from perf's CPU
samples (data only; text in render/profile_text.py).

The view is the shared runner and model of ksight.trace, nothing of its own:
- `take(...)` samples with `trace.perf.sample` (bounded, recorded by PID, stopped on exit or
  Ctrl-C, says what is missing) and summarises with `trace.stacks.build`;
- `build(samples, ...)` is pure: where the samples fell (idle, kernel, user; softirq and irq
  apart), the hottest kernel functions and all functions (self = the function was the leaf;
  total = it was anywhere on the stack), the hottest stacks, the processes sampled, and the
  folded stacks for flame graphs;
- `requirements()` says what profiling needs here and what is missing (perf installed and
  runnable, root, perf_event_paranoid, kptr_restrict), with the fix for each.

Idle is what /proc/stat counts as idle: the idle task outside any interrupt. An interrupt or
softirq that ran on an idle CPU is work (see trace/stacks.py, `context`).
"""

from __future__ import annotations

import threading
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..trace.perf import Need, Sampling, read_requirements, requirements, sample
from ..trace.stacks import (DEFAULT_FREQ, Func, HotStack, ProcSamples, Profile, build, context,
                            fold, is_idle, kernel_symbols)
from ..trace.stacks import is_kernel_frame as is_kernel


@dataclass(frozen=True)
class Taken:
    """A profile and what writing it out needs: every folded stack (work only; the profile
    keeps the 2000 most frequent) and the kernel frame names (orange in the flame graph)."""
    profile: Profile
    folded: dict[str, int]
    kernel: frozenset[str]


def take(seconds: float, *, pid: int | None = None, freq: int = DEFAULT_FREQ,
         kernel_only: bool = False, top: int = 25, stop: threading.Event | None = None,
         progress=None) -> Taken:
    """Sample (live) and summarise."""
    got = sample(seconds, pid=pid, freq=freq, kernel_only=kernel_only, stop=stop,
                 progress=progress)
    prof = build(got.samples, seconds=got.seconds, freq=freq, pid=pid, kernel_only=kernel_only,
                 top=top, lost=got.lost, stopped_early=got.stopped_early)
    return Taken(prof, dict(fold(got.samples, kernel_only=kernel_only, idle=False)),
                 kernel_symbols(got.samples))


__all__ = ["Profile", "Func", "HotStack", "ProcSamples", "Need", "Taken", "build", "fold",
           "is_kernel", "is_idle", "context", "requirements", "read_requirements", "sample",
           "take", "Sampling", "DEFAULT_FREQ"]
