"""cpu.load-high: the load average above the CPUs online, and what makes it."""

from __future__ import annotations

from ....model import cpu as model
from ...finding import Action
from ...rule import Context, Rule, Threshold, rule


@rule("cpu.load-high", title="Load average above the CPU count",
      needs=("loadavg", "stat"), uses=("pressure",), processes=("stat",), window=False,
      thresholds={
          "warn_load_per_cpu": Threshold(1.5, "x CPUs online",
                                         "a load equal to the CPU count is every CPU busy, which "
                                         "is healthy; half as much again means tasks queue (or "
                                         "sleep in D) faster than they are served"),
          "critical_load_per_cpu": Threshold(4, "x CPUs online",
                                             "four tasks for every CPU: latency grows for "
                                             "everything"),
      })
def load_high(ctx: Context, r: Rule):
    """The 1-minute load average (peak of the window's snapshots) against the CPUs online.
    Linux counts both runnable tasks (R) and tasks in uninterruptible sleep (D) in it, so the
    rule says which: procs_running from /proc/stat against the processes in state D in the
    process table (and procs_blocked, the D tasks waiting for I/O). Runnable: the CPUs are
    saturated (PSI cpu some says for how long tasks waited). Blocked: I/O or memory reclaim (or
    a lock held across either), not a lack of CPU."""
    best = None
    for s in ctx.snapshots:
        la, st = s.get("loadavg"), s.get("stat")
        if la is None:
            continue
        n = model.cpus_online(s)
        if not n:
            continue
        if best is None or la.load1 / n > best[0]:
            best = (la.load1 / n, s, la, n)
    if best is None:
        raise ctx.cannot_look("no load average with a CPU count (/proc/loadavg, /proc/stat)")
    ratio, snap, la, n = best
    if ratio < r.t("warn_load_per_cpu"):
        return None
    running = max((s.get("stat").procs_running or 0 for s in ctx.snapshots
                   if s.get("stat") is not None), default=0)
    d_tasks = [p for p in (snap.processes or {}).values()
               if p.stat is not None and p.stat.state == "D"]
    d_count = max((model.d_state_count(s) or 0) for s in ctx.snapshots)
    st = snap.get("stat")
    ev = [ctx.ev("load average (1 min)", la.load1, "tasks", "/proc/loadavg",
                 threshold=round(r.t("warn_load_per_cpu") * n, 2),
                 note=f"{ratio:.2f} per CPU; 5 min {la.load5:.2f}, 15 min {la.load15:.2f}"),
          ctx.ev("CPUs online", n, "CPUs", "/proc/stat"),
          ctx.ev("runnable tasks (procs_running, peak)", running, "tasks", "/proc/stat",
                 note="threads running or waiting for a CPU, this reader included"),
          ctx.ev("processes in D state (peak)", d_count, "processes", "/proc/PID/stat",
                 note="uninterruptible sleep; thread group leaders only")]
    if st is not None and st.procs_blocked is not None:
        ev.append(ctx.ev("blocked on I/O (procs_blocked)", st.procs_blocked, "tasks", "/proc/stat",
                         note="the D tasks that wait for I/O (nr_iowait)"))
    pr = ctx.get("pressure")
    if pr is not None and pr.cpu is not None and pr.cpu.some is not None:
        ev.append(ctx.ev("CPU pressure (some, avg10)", pr.cpu.some.avg10, "%", "/proc/pressure/cpu",
                         note="share of the last 10 s some runnable task waited for a CPU"))
    names = {}
    for p in d_tasks:
        names[p.comm or "?"] = names.get(p.comm or "?", 0) + 1
    if names:
        top = sorted(names.items(), key=lambda kv: -kv[1])[:5]
        ev.append(ctx.ev("D-state processes by name", ", ".join(f"{c} x{k}" for c, k in top), "",
                         "/proc/PID/stat"))
    blocked = d_count >= max(1, running - 1)  # minus this reader
    # the 1-minute average lags by minutes: a burst that is over still shows. What counts now:
    # runnable (this reader left out) plus blocked, at the busiest snapshot of the window
    now = max(((max(0, (st_.procs_running or 0) - 1)
                + max(model.d_state_count(s) or 0, st_.procs_blocked or 0))
               for s in ctx.snapshots if (st_ := s.get("stat")) is not None), default=0)
    ev.append(ctx.ev("runnable + blocked tasks now (peak of the window)", now, "tasks",
                     "/proc/stat", threshold=n,
                     note="procs_running (less this reader) + D-state tasks; the load average "
                          "is their 1-minute mean"))
    if now < n:
        return r.finding(
            "info", ev,
            f"The load average ({la.load1:.2f}) is {ratio:.1f} times the {n} CPUs online, but "
            f"only {now} tasks are runnable or blocked now: the load is decaying from an "
            "earlier burst (the 1-minute average takes minutes to fall). Nothing waits now.",
            [Action.command("ksight cpu 1 5  # watch runnable and blocked tasks now")])
    if blocked:
        what = (f"Most of it is tasks in uninterruptible sleep (D): {d_count} processes in D "
                f"against {running} runnable. They use no CPU: the load is waiting on I/O, "
                "memory reclaim, or a lock held across them (NFS, a hung device, a vfork child "
                "that does not exec), not a lack of CPU; more CPUs would not help.")
        actions = [Action.command("ksight cpu --blocked  # what the D tasks wait for, grouped by "
                                  "kernel stack (root)"),
                   Action.command("ksight check --area pagecache  # reclaim and writeback stalls")]
    else:
        what = (f"Most of it is runnable tasks: {running} running or waiting for {n} CPUs. The "
                "CPUs are saturated: tasks wait in the run queue (see CPU pressure). Spread or "
                "cut the work, or add CPUs.")
        actions = [Action.command("ksight cpu 1 5  # which CPUs are busy, with what, and the top "
                                  "processes"),
                   Action.command("ksight profile --seconds 10  # what the CPUs run")]
    sev = "critical" if ratio >= r.t("critical_load_per_cpu") else "warning"
    return r.finding(
        sev, ev,
        f"The load average ({la.load1:.2f}) is {ratio:.1f} times the {n} CPUs online. Linux's "
        "load counts runnable tasks and tasks in uninterruptible sleep (D). " + what,
        actions)
