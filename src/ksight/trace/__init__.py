"""ksight.trace: the tracing engine (tracefs first, perf for sampling, bpftrace when present).

Counters say that something happens; tracepoints say who, where and how long.

    from ksight.trace import trace
    with trace(["syscalls:sys_enter_mmap"], filter="len == 7340032", seconds=5) as t:
        workload()
    t.events, t.lost, t.missing

- tracefs (no dependency): a private instance `instances/ksight-<pid>-<n>`, kernel-side filters,
  per-CPU binary ring buffers decoded with each event's own `format` file; see session.py.
- perf: the one runner of perf (perf.py: CPU profiles, user-space stacks of events); the
  samples' model (stacks.py: idle/softirq/irq, folded stacks, the profile); SVG (flame.py).
- bpftrace: optional, used when installed and working, for in-kernel aggregation: the `reclaim`
  and `softirq` recipes build their latency histograms in the kernel (bpftrace.py).
- recipes/: traces named by the question they answer (`ksight trace RECIPE`), one module
  each, returning typed results (text: ksight.render.trace_text).
"""

# imported on first use: `ksight.trace.leftovers` (which every command may import to clean up
# after a dead run) must not pull in the ring buffer parser and the session
_LAZY = {"Event": "ringbuf", "Missing": "session", "Trace": "session",
         "check_events": "session", "trace": "session"}


def __getattr__(name):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'ksight.trace' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"ksight.trace.{mod}"), name)


__all__ = ["trace", "Trace", "Event", "Missing", "check_events"]
