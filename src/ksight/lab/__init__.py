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


def cleanup_stale() -> list[str]:
    """Remove what a killed lab run left behind (cgroups, namespaces, swap files)."""
    from . import cgroup, netns

    from . import pagecache_scenarios, sysctl

    out = cgroup.cleanup_stale() + netns.cleanup_stale() + pagecache_scenarios.cleanup_stale()
    # sysctls last: a guard that is still alive holds the lock, so wait for it like a new guard
    g = sysctl.SysctlGuard()
    g._lock()
    out += g.recovered
    g._unlock()
    return out


def _load() -> None:
    from . import pagecache_scenarios  # noqa: F401  (registers its scenarios)


_load()

__all__ = ["SCENARIOS", "Scenario", "Running", "available", "register", "cleanup_stale"]
