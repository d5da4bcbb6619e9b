"""Undo what dead ksight runs left behind: the records in /run/ksight whose owner is gone.

`reap()` runs at the start of every ksight command (cli/main.py calls it only when
/run/ksight exists, which is only while something is recorded: one stat otherwise) and is the
whole of `ksight cleanup` (`reap(thorough=True)`, which also looks for unrecorded leftovers of
older ksight versions and lab runs). For each record whose flock is free (its owner is dead,
in whatever PID namespace it ran; see ksight.pids):

  child     SIGKILL the perf/bpftrace/sleep child it started, by PID AND start time
  instance  tracing off, events disabled, filters cleared, instance removed
  dir       its temp directory (perf.data) deleted
  lab       its lab cgroup, namespaces, loop device, swap file, work dir (lab cleanup's logic)
  sysctl    sysctls a killed lab run changed, restored from its journal
  mount     the tracefs mount it made, unmounted once no live ksight and nothing else uses it

What cannot be undone yet stays in the record (the next command retries) and is reported.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import field
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from .. import pids


@dataclass
class Report:
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)      # what is left, and why


def _instance(e: dict, rep: Report) -> bool:
    from . import tracefs

    name = e["name"]
    mnt = tracefs.tracefs_mount_point(tracefs._read_mountinfo())
    if mnt is None:
        try:   # instances outlive the mount: mount it to remove them (unmounted again after)
            mnt = tracefs.acquire()
        except Exception as exc:
            rep.kept.append(f"tracefs instance {name}: {exc}")
            return False
        try:
            return _instance_at(mnt, name, rep)
        finally:
            tracefs.release()
    return _instance_at(mnt, name, rep)


def _instance_at(mnt: str, name: str, rep: Report) -> bool:
    from . import tracefs

    d = os.path.join(mnt, "instances", name)
    if not os.path.isdir(d):
        return True
    on = tracefs.enabled_events(d)
    if tracefs.remove_instance(d):
        rep.removed.append(f"tracefs instance {name}" + (f" ({len(on)} events were on)" if on else ""))
        return True
    rep.kept.append(f"tracefs instance {name}: could not be removed (busy)")
    return False


def _child(e: dict, rep: Report) -> bool:
    p = pids.Proc.of(e["proc"])
    what = pids.kill_recorded(p)
    if what == "killed":
        rep.removed.append(f"{e.get('what', 'child')} process {p.host_pid or p.pid} (killed)")
        return True
    if what == "gone":
        return True
    rep.kept.append(f"{e.get('what', 'child')} process {p.pid}: {what}; run `ksight cleanup` "
                    "from the host's PID namespace")
    return False


def _dir(e: dict, rep: Report) -> bool:
    path = e["path"]
    if os.path.lexists(path):
        shutil.rmtree(path, ignore_errors=True)
        if os.path.lexists(path):
            rep.kept.append(f"{path}: could not be deleted")
            return False
        rep.removed.append(f"temp directory {path}")
    return True


def _mount(e: dict, live: list[dict], rep: Report) -> bool:
    from . import tracefs

    path = e["path"]
    if tracefs.tracefs_mount_point(tracefs._read_mountinfo()) != path:
        return True   # no longer mounted there
    if any(x.get("path") == path for x in live if x.get("kind") in ("tracefs", "mount")) \
            or tracefs._mount_users:
        rep.kept.append(f"tracefs mount {path}: a running ksight uses it (unmounted after it ends)")
        return False
    if tracefs.in_use(path):
        rep.kept.append(f"tracefs mount {path}: made by ksight, but something else uses it now")
        return False
    if tracefs._umount(path):
        rep.removed.append(f"tracefs mount {path} (made by a dead ksight)")
        return True
    rep.kept.append(f"tracefs mount {path}: umount failed")
    return False


def reap(thorough: bool = False) -> Report:
    """Undo what dead owners recorded; `thorough` also sweeps unrecorded leftovers."""
    rep = Report()
    if os.geteuid() != 0:
        if thorough:
            rep.kept.append("not root: cannot look at or remove what other runs left")
        return rep
    dead, live = pids.records()
    mounts: list[tuple[pids.Dead, dict]] = []
    lab_dead = []
    try:
        for r in dead:
            left = []
            for e in r.entries:
                kind = e.get("kind")
                try:
                    if kind == "child":
                        ok = _child(e, rep)
                    elif kind == "instance":
                        ok = _instance(e, rep)
                    elif kind == "dir":
                        ok = _dir(e, rep)
                    elif kind in ("lab", "sysctl"):
                        lab_dead.append((r, e))
                        ok = True      # done below, all lab leftovers at once
                    elif kind == "mount":
                        mounts.append((r, e))
                        ok = True
                    else:
                        ok = True      # "tracefs" (a use, nothing to undo) or unknown
                except Exception as exc:   # one bad entry must not stop the rest
                    rep.kept.append(f"{kind} {e}: {exc}")
                    ok = False
                if not ok:
                    left.append(e)
            r.entries = left
        if lab_dead or thorough:
            try:
                from ..lab import cleanup_stale

                # every lab resource of a dead owner (its record is locked by us, so it shows
                # as dead to cleanup_stale's own look at the records)
                dead_idents = {e.get("ident") for _, e in lab_dead if e.get("ident")}
                removed, kept = cleanup_stale(extra_dead=dead_idents, report=True)
                rep.removed += removed
                rep.kept += kept
            except Exception as exc:
                rep.kept.append(f"lab leftovers: {exc}")
                for r, e in lab_dead:
                    r.entries.append(e)
        for r, e in mounts:
            if not _mount(e, live, rep):
                r.entries.append(e)
        if thorough:
            _sweep_instances(rep, live)
    finally:
        for r in dead:
            try:
                r.keep_only(r.entries)
            except OSError as exc:
                rep.kept.append(f"record {r.path}: {exc}")
            r.close()
        try:
            os.rmdir(pids.STATE_DIR)   # empty: the next command's check is one stat
        except OSError:
            pass
    return rep


def _sweep_instances(rep: Report, live: list[dict]) -> None:
    """Unrecorded ksight instances (older ksight versions) whose owner is proven dead."""
    from . import tracefs

    mnt = tracefs.tracefs_mount_point(tracefs._read_mountinfo())
    if mnt is None:
        return
    for name in tracefs.remove_stale(mnt):
        rep.removed.append(f"tracefs instance {name}")
    left = [n for n in tracefs.our_instances(mnt)
            if not any(e.get("name") == n for e in live)]
    for n in left:
        rep.kept.append(f"tracefs instance {n}: its owner may live in another PID namespace "
                        "(not removed; run `ksight cleanup` from the host)")


def leftovers_summary() -> list[str]:
    """What a dead run left, without touching it (for `ksight cleanup --dry-run`)."""
    out = []
    dead, _ = pids.records()
    for r in dead:
        for e in r.entries:
            out.append(f"{e.get('kind')}: " + ", ".join(f"{k}={v}" for k, v in e.items()
                                                        if k not in ("id", "kind")))
        r.close()
    return out


__all__ = ["reap", "Report", "leftovers_summary"]
