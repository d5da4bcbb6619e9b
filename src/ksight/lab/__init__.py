"""The fault lab: reproduce one kernel performance fault at a time on this machine, bounded in
time, memory and disk, inside its own memory cgroup or network namespace where it can, and
clean up afterwards (also on Ctrl-C, SIGTERM and exceptions).

    from ksight.lab import SCENARIOS, available
    sc = SCENARIOS["dirty-backlog"]
    ok, why = available(sc)
    with sc.running(8) as run:
        ...  # run `ksight check` now: it must report sc.expects

Primitives (usable on their own): cgroup.MemoryCgroup, netns.NetnsPair, sysctl.SysctlGuard.
Everything here acts on the live machine and needs root; docs/lab.md lists the scenarios.
"""

from __future__ import annotations

import os

from .scenario import Running, Scenario

SCENARIOS: dict[str, Scenario] = {}


def register(sc: Scenario) -> Scenario:
    if sc.name in SCENARIOS:
        raise ValueError(f"scenario {sc.name!r} registered twice")
    SCENARIOS[sc.name] = sc
    return sc


def available(scenario: Scenario | str) -> tuple[bool, str]:
    """(True, '') when the scenario can run here, else (False, reason for people)."""
    sc = SCENARIOS[scenario] if isinstance(scenario, str) else scenario
    try:
        return sc.available()
    except OSError as exc:
        return False, str(exc)


def cleanup_stale(extra_dead=(), report: bool = False):
    """Remove what a killed lab run left behind (cgroups, namespaces, loop devices, swap files,
    work directories, changed sysctls). Only what belongs to an owner proven dead is touched
    (ksight.pids.Liveness: a lab run in another PID namespace keeps its things).

    Returns the list of what was removed; with report=True, (removed, kept) where kept says
    what is left and why."""
    from .. import pids
    from . import cgroup, netns, pagecache_scenarios, sysctl

    live = pids.Liveness.now()
    # the caller (trace/leftovers.reap) holds the dead records' locks, so they look live here
    live.dead |= set(extra_dead)
    live.live -= set(extra_dead)
    out = cgroup.cleanup_stale(live) + netns.cleanup_stale(live) + pagecache_scenarios.cleanup_stale(live)
    from . import memory_system_scenarios

    out += memory_system_scenarios.cleanup_stale(live)
    # sysctls last: a guard that is still alive holds the lock, so wait for it like a new guard
    g = sysctl.SysctlGuard()
    g._lock()
    out += g.recovered
    g._unlock()
    if not report:
        return out
    return out, _left(live)


def _left(live) -> list[str]:
    """Lab leftovers still there that no live owner holds (e.g. an owner we cannot see)."""
    import re

    from . import cgroup, netns
    from .pagecache_scenarios import WORK_BASE

    kept = []
    for path in cgroup.list_lab_groups():
        if "lab:" + path not in live.live:
            kept.append(f"lab cgroup {path}: owner not proven dead (another PID namespace?)")
    for ns in netns.list_namespaces():
        if re.match(r"^ksl\d+[ab]$", ns) and "lab:netns:" + ns not in live.live:
            kept.append(f"lab netns {ns}: owner not proven dead (another PID namespace?)")
    try:
        names = os.listdir(WORK_BASE)
    except OSError:
        names = []
    for n in names:
        d = os.path.join(WORK_BASE, n)
        if n.startswith("ksight-lab-") and "lab:" + d not in live.live:
            kept.append(f"lab work dir {d}: owner not proven dead (another PID namespace?)")
    return kept


def leftovers(pid: int | None = None, saved_sysctls: dict | None = None) -> list[str]:
    """What a lab run of process `pid` (default: this one) left: cgroups, namespaces, work
    directories, loop devices and swap files named after it, a sysctl journal, sysctls that
    differ from `saved_sysctls`. Empty when its clean-up really happened."""
    from . import blockdev, cgroup, netns, sysctl
    from .pagecache_scenarios import WORK_BASE, _active_swaps

    pid = os.getpid() if pid is None else pid
    tag = f"ksight-lab-{pid}-"
    out = [f"cgroup {p}" for p in cgroup.list_lab_groups() if os.path.basename(p).startswith(tag)]
    try:
        import re

        from .blockdev import detect_throttle

        v, mount = detect_throttle()
        if v == 2:
            out += [f"cgroup {os.path.join(mount, n)}" for n in os.listdir(mount)
                    if n.startswith(tag) and os.path.join(mount, n) not in
                    {p.split(" ", 1)[1] for p in out}]
    except Exception:
        pass
    out += [f"netns {n}" for n in netns.list_namespaces() if n in (f"ksl{pid}a", f"ksl{pid}b")]
    try:
        dirs = [os.path.join(WORK_BASE, n) for n in os.listdir(WORK_BASE) if n.startswith(tag)]
    except OSError:
        dirs = []
    loops = blockdev.loop_devices()
    ours = {dev for dev, bf in loops.items()
            if any(bf.startswith(d + "/") for d in dirs) or os.path.basename(
                os.path.dirname(bf.removesuffix(" (deleted)"))).startswith(tag)}
    for _ in range(8):  # and the loop devices stacked on those (blockdev.LoopDev over=)
        more = {dev for dev, bf in loops.items() if bf in ours and dev not in ours}
        if not more:
            break
        ours |= more
    out += [f"loop device {dev} ({loops[dev]})" for dev in sorted(ours)]
    out += [f"swap {s}" for s in _active_swaps() if any(s.startswith(d + "/") for d in dirs)]
    out += [f"work directory {d}" for d in dirs]
    from .memory_system_scenarios import leftover_segments

    out += leftover_segments(pid)
    # Another lab run that waited for our sysctl lock takes it as soon as we restore and may
    # already have changed the same sysctls: its journal then holds what it found, which is what
    # we put back. Judge our restore against that, not against its changes.
    other = _other_live_journal(pid)
    if os.path.exists(sysctl.JOURNAL_PATH) and other is None:
        out.append(f"sysctl journal {sysctl.JOURNAL_PATH} (sysctls not yet restored)")
    for name, old in (saved_sysctls or {}).items():
        try:
            now = other[name] if other is not None and name in other else sysctl.read_sysctl(name)
        except OSError:
            continue
        if now != old and not (name in sysctl._PAIRS and old.strip() == "0"):
            out.append(f"sysctl {name} = {now} (was {old})")
    return out


def _other_live_journal(pid: int) -> dict | None:
    """The values another live lab run found before it changed sysctls (its journal), or None
    when the journal is absent, unreadable, ours, or its owner is gone."""
    import json

    from . import sysctl

    try:
        with open(sysctl.JOURNAL_PATH) as f:
            doc = json.load(f)
        owner = int(doc.get("pid"))
        saved = {str(n): str(v) for n, v in doc.get("saved", [])}
    except (OSError, ValueError, TypeError):
        return None
    if owner == pid:
        return None
    try:
        os.kill(owner, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, another user's
    return saved


def _load() -> None:
    # each module registers its scenarios
    from . import memory_process_scenarios, memory_system_scenarios, pagecache_scenarios  # noqa: F401
    from . import tcp_scenarios  # noqa: F401
    from . import cpu_scenarios  # noqa: F401


_load()

__all__ = ["SCENARIOS", "Scenario", "Running", "available", "register", "cleanup_stale",
           "leftovers"]
