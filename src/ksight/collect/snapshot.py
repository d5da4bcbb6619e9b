"""Take a Snapshot from a Root: read every requested source, record what is unavailable.

A source that cannot be read (missing, permission denied, vanished) or whose text is malformed
does not stop the snapshot: it is listed in Snapshot.unavailable with the reason, and the rest
is collected. This is what lets `ksight check` give a partial but honest diagnosis.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

from ..errors import KsightError, ParseError, Unavailable
from ..fs import Root
from ..model.snapshot import HostInfo, Missing, Snapshot
from ..sources import DEFAULT, SYSTEM


def host_info(root: Root, hint: dict | None = None) -> HostInfo:
    """Who the snapshot is of. Live: from the running system. Capture: from its manifest."""
    hint = hint or {}

    def text(path: str) -> str | None:
        try:
            return root.read_text(path).strip() or None
        except Unavailable:
            return None

    if root.live:
        page_size, assumed = os.sysconf("SC_PAGE_SIZE"), False
        clk_tck = os.sysconf("SC_CLK_TCK")
        cpus = os.cpu_count()
    else:
        page_size = hint.get("page_size")
        assumed = page_size is None
        page_size = int(page_size or 4096)
        clk_tck = int(hint.get("clk_tck") or 100)
        cpus = hint.get("cpus")
    return HostInfo(
        hostname=text("proc/sys/kernel/hostname") or hint.get("hostname"),
        kernel=text("proc/sys/kernel/osrelease") or hint.get("kernel"),
        kernel_version=hint.get("kernel_version") or text("proc/version"),
        page_size=page_size,
        page_size_assumed=assumed,
        clk_tck=clk_tck,
        cpus=cpus,
        boot_id=text("proc/sys/kernel/random/boot_id"),
    )


def read_uptime(root: Root) -> float | None:
    try:
        first = root.read_text("proc/uptime").split()
        return float(first[0]) if first else None
    except (Unavailable, ValueError):
        return None


_READERS: dict[tuple[str, str], object] = {}  # (module, reader) -> function: import once per process


def _reader(src):
    key = (src.module, src.reader)
    fn = _READERS.get(key)
    if fn is None:
        fn = _READERS[key] = src.load()
    return fn


def take(
    root: Root,
    *,
    sources: Iterable[str] | None = None,
    processes: bool = False,
    sockets: bool = False,
    host: HostInfo | None = None,
    host_hint: dict | None = None,
    taken_at: float | None = None,
    known_unavailable: Iterable[Missing] = (),
    plan=None,
) -> Snapshot:
    """Read the named system sources (sources.DEFAULT: every SYSTEM source but the opt-in ones,
    such as vmallocinfo, when none are named) into one Snapshot.

    processes/sockets add the per-process table and the socket table. On a capture, taken_at and
    known_unavailable come from the manifest (the original reasons beat "not captured").
    A collect.plan.Plan, when given, says all of it: sources, process parts, smaps for the
    largest few, sockets (the collector passes one; the other arguments are for tests).
    """
    detail = None
    smaps_top = 0
    pids = None
    kwargs: dict[str, dict] = {}  # source -> extra arguments of its reader
    owners = True  # socket owners now (plan.owners_later: the engine asks for them later)
    if plan is not None:
        if getattr(plan, "cgroup_files", None) is not None:
            kwargs["cgroup_memory"] = {"files": plan.cgroup_files}  # only the files rules read
        sources = plan.sources
        detail = tuple(plan.processes) or None
        processes = bool(plan.processes) or plan.sockets
        sockets = plan.sockets
        smaps_top = plan.smaps_top
        pids = plan.pids
        owners = not getattr(plan, "owners_later", False)
    mono = time.monotonic() if root.live else None
    wall = taken_at if taken_at is not None else (time.time() if root.live else None)
    names = list(DEFAULT) if sources is None else list(sources)
    got: dict[str, object] = {}
    missing: list[Missing] = []
    prior = {m.source: m for m in known_unavailable}
    later = [n for n in names if n in SYSTEM and SYSTEM[n].after_processes]
    for name in names:
        if name not in later:
            _read_source(root, name, kwargs.get(name), got, missing, prior)
    for w in getattr(plan, "when", ()):  # read only when the sources just read say so
        if all(a in got for a in w.after) and w.wanted(got):
            _read_source(root, w.source, kwargs.get(w.source), got, missing, prior)
        else:
            missing.append(Missing(w.source, f"not read: {w.why}"))
    host = host or host_info(root, host_hint)
    procs = None
    if processes:
        from .processes import DEFAULT_DETAIL, scan

        # sockets need each process's socket inodes to name the owner of a connection
        detail = tuple(dict.fromkeys((detail or DEFAULT_DETAIL)
                                     + (("sockets",) if sockets and owners else ())))
        procs, pmissing = scan(root, detail=detail, page_size=host.page_size, pids=pids)
        missing.extend(pmissing)
        if smaps_top and procs:
            procs = _add_smaps(root, procs, smaps_top, host.page_size, missing)
        if getattr(plan, "few", None) and procs:
            from .processes import add_few

            add_few(root, procs, plan.few, missing)  # parts for a chosen few (plan.Few)
    for name in later:  # sources that build on the process table
        kw = dict(kwargs.get(name) or {}, **({"processes": procs} if procs is not None else {}))
        _read_source(root, name, kw or None, got, missing, prior)
    socks = None
    if sockets:
        from .sockets import collect as collect_sockets

        socks, smissing = collect_sockets(root, procs, owners=owners)
        missing.extend(smissing)
        if getattr(plan, "netns_counters", False):
            from .netns_counters import collect as collect_netns_counters

            got["netns_counters"], nmissing = collect_netns_counters(root, socks)
            missing.extend(nmissing)
    return Snapshot(
        taken_at=wall,
        monotonic=mono,
        # the uptime source when collected (one read, so a capture replays the same value)
        uptime_s=got["uptime"].uptime_s if "uptime" in got else read_uptime(root),
        host=host,
        sources=got,
        processes=procs,
        sockets=socks,
        unavailable=tuple(missing),
    )


def _read_source(root: Root, name: str, kw: dict | None, got: dict, missing: list,
                 prior: dict) -> None:
    """Read one system source into `got`, or record why it is missing (never raise)."""
    src = SYSTEM.get(name)
    if src is None:
        missing.append(Missing(name, "unknown source"))
        return
    try:
        got[name] = _reader(src)(root, **kw) if kw else _reader(src)(root)
        # a source made of several files keeps the good ones and says which were not used
        for part, why in (getattr(got[name], "malformed", None) or {}).items():
            missing.append(Missing(f"{name}:{part}", f"malformed: {why}"))
    except Unavailable as u:
        missing.append(prior.get(name) or Missing(name, f"{u.source}: {u.reason}"))
    except ParseError as e:
        missing.append(Missing(name, f"malformed: {e}"))
    except KsightError as e:
        missing.append(Missing(name, str(e)))


def _add_smaps(root: Root, procs: dict, n: int, page_size: int, missing: list) -> dict:
    """smaps_rollup of the n largest processes by resident memory (it costs the kernel a walk of
    every mapping, so never for all)."""
    import dataclasses

    from .processes import scan

    def rss(p):
        v = p.res_kb
        return v if v is not None else -1

    top = sorted((p for p in procs.values() if not p.kernel_thread), key=rss, reverse=True)[:n]
    got, gmissing = scan(root, detail=("smaps_rollup",), pids=[p.pid for p in top],
                         page_size=page_size, c_path=False)
    missing.extend(m for m in gmissing if m.source != "processes")
    out = dict(procs)
    for pid, g in got.items():
        if pid in out and g.smaps_rollup is not None:
            out[pid] = dataclasses.replace(out[pid], smaps_rollup=g.smaps_rollup)
    return out
