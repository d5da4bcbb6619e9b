"""Triggers: the deep evidence captured when a rule fires while recording, and its bundles.

One table says what each rule's bundle holds (`CAPTURES`): a trace recipe run for a few seconds
(trace/recipes), the smaps of the process the finding names, the kernel stacks of the tasks in
uninterruptible sleep (D state). A rule not in the table gets a bundle with its finding only.

    rule                                   captured
    pagecache.direct-reclaim, ...          reclaim recipe (who stalls in reclaim, how long)
    pagecache.compaction-stall             compaction recipe
    pagecache.dirty-backlog                writeback recipe (who is throttled, pauses)
    tcp.retransmission-rate                retrans recipe (which flows retransmit)
    tcp.memory-pressure                    buflimit recipe
    memory.leak-suspect, vma-growth, ...   /proc/PID/smaps of the subject + mmap recipe on it
    cpu.high-system                        profile (perf, kernel and user stacks)
    cpu.high-softirq                       softirq recipe
    cpu.load-high                          D-state tasks' /proc/PID/stack (and wchan)

A bundle is a directory `<bundle_dir>/<UTC time>-<rule>[-pid<PID>]/` holding `bundle.json` (the
rule, subject, time, the finding, what was captured and what could not be, and why) and raw
files: `smaps-<PID>.txt`, `stacks.txt`, `<recipe>.json` (the recipe's result) and
`<recipe>.txt` (as `ksight trace` prints it). `load_bundles(dir)` reads them back for the report.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..diagnose.finding import Finding, Subject
from ..errors import Unavailable

CAPTURE_SECONDS = 3.0  # how long a trigger traces
MAX_EVENTS = 200_000  # a trigger's trace stops at this many events
MAX_STACK_TASKS = 200  # D-state tasks whose stacks are read, at most

RECLAIM = ("pagecache.direct-reclaim", "pagecache.reclaim-throttled", "pagecache.reclaim-efficiency",
           "pagecache.memory-psi-full", "pagecache.thrashing", "pagecache.swap-io")
GROWTH = ("memory.leak-suspect", "memory.vma-growth", "memory.virtual-leak")


@dataclass(frozen=True)
class Capture:
    """What a rule's bundle holds: a recipe (and its options from the finding), smaps of the
    subject, D-state stacks."""

    recipe: str | None = None
    pid_option: bool = False  # pass the subject's PID to the recipe (mmap, profile)
    smaps: bool = False
    dstate: bool = False


CAPTURES: dict[str, Capture] = {
    **{r: Capture("reclaim") for r in RECLAIM},
    "pagecache.compaction-stall": Capture("compaction"),
    "pagecache.dirty-backlog": Capture("writeback"),
    "tcp.retransmission-rate": Capture("retrans"),
    "tcp.memory-pressure": Capture("buflimit"),
    **{r: Capture("mmap", pid_option=True, smaps=True) for r in GROWTH},
    "cpu.high-system": Capture("profile"),
    "cpu.high-softirq": Capture("softirq"),
    "cpu.load-high": Capture(dstate=True),
}


def capture_for(rule_id: str) -> Capture:
    return CAPTURES.get(rule_id, Capture())


def bundle_dir_for(db_path: str, meta: dict | None = None) -> str:
    """Where a recording's bundles are: the recording's meta `bundle_dir` when the recorder
    wrote one, else beside the file (`/var/lib/ksight/ksight.db` -> `.../ksight-bundles`, as
    the recorder makes it)."""
    if meta and meta.get("bundle_dir"):
        return meta["bundle_dir"]
    return os.path.splitext(os.path.abspath(db_path))[0] + "-bundles"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:60]


def _subject_dict(s: Subject | None) -> dict | None:
    if s is None:
        return None
    from ..render.jsonable import jsonable

    return {k: v for k, v in jsonable(s).items() if v is not None}


def _subject_of(d: dict | None) -> Subject | None:
    if not d:
        return None
    from dataclasses import fields

    known = {f.name for f in fields(Subject)}
    return Subject(**{k: v for k, v in d.items() if k in known})


# ---- capturing ---------------------------------------------------------------------------------
def _write(path: str, text: str) -> int:
    with open(path, "w") as f:
        f.write(text)
    return len(text.encode())


def _smaps(root, pid: int, out: str) -> tuple[str, int]:
    text = root.read_text(f"proc/{pid}/smaps")  # Unavailable when gone or not permitted
    name = f"smaps-{pid}.txt"
    return name, _write(os.path.join(out, name), text)


def _dstate_stacks(root, out: str, limit: int = MAX_STACK_TASKS) -> tuple[str, int, int]:
    """Kernel stacks of the tasks in D state now: (file, bytes, tasks)."""
    lines, n = [], 0
    for name in sorted(root.listdir("proc"), key=lambda x: (len(x), x)):
        if not name.isdigit():
            continue
        try:
            tids = [t for t in root.listdir(f"proc/{name}/task") if t.isdigit()]
        except Unavailable:
            continue
        for tid in tids:
            base = f"proc/{name}/task/{tid}"
            try:
                stat = root.read_text(f"{base}/stat")
            except Unavailable:
                continue
            state = stat.rsplit(")", 1)[-1].split()[:1]
            if state != ["D"]:
                continue
            comm = stat[stat.find("(") + 1: stat.rfind(")")]
            try:
                stack = root.read_text(f"{base}/stack")
            except Unavailable as u:
                stack = f"(stack not readable: {u.reason})\n"
            try:
                wchan = root.read_text(f"{base}/wchan").strip()
            except Unavailable:
                wchan = "?"
            lines.append(f"pid {name} tid {tid} ({comm}) wchan {wchan}\n{stack}\n")
            n += 1
            if n >= limit:
                break
        if n >= limit:
            lines.append(f"(stopped at {limit} tasks)\n")
            break
    text = "".join(lines) or "no task in D state when the bundle was taken\n"
    return "stacks.txt", _write(os.path.join(out, "stacks.txt"), text), n


def _recipe(root, name: str, pid: int | None, seconds: float, out: str,
            stop: Callable[[], bool] | None = None) -> tuple[list[str], int, dict]:
    """Run a recipe for `seconds` (bounded by MAX_EVENTS); (files, bytes, summary)."""
    from ..render import trace_text
    from ..render.jsonable import jsonable
    from ..trace.recipes import get

    cls = get(name)
    opts = {"pid": pid} if pid and name in ("mmap", "profile") else {}
    recipe = cls(root, **opts)
    if "perf" in cls.backends:
        sess = recipe.session(seconds)
    else:
        sess = recipe.session(seconds, max_events=MAX_EVENTS)
    with sess as t:  # tracing is switched off and the instance removed on any exit
        t.wait()
    res = recipe.result(t)
    files, size = [], 0
    size += _write(os.path.join(out, f"{name}.json"), json.dumps(jsonable(res), indent=1))
    files.append(f"{name}.json")
    try:
        size += _write(os.path.join(out, f"{name}.txt"), trace_text.render(res))
        files.append(f"{name}.txt")
    except Exception:  # the JSON is the evidence; the text is a convenience
        pass
    return files, size, {"recipe": name, "events": res.events, "lost": res.lost,
                         "seconds": res.seconds}


def capture(finding: Finding, bundle_dir: str, *, root=None, seconds: float = CAPTURE_SECONDS,
            at: float | None = None) -> str:
    """Take the bundle for `finding` now (live); returns its directory. Never raises for what
    could not be captured: bundle.json says what and why."""
    from ..fs import LiveRoot

    root = root or LiveRoot()
    at = time.time() if at is None else at
    sub = finding.subject
    pid = sub.pid if sub is not None else None
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(at))
    name = f"{stamp}-{_slug(finding.id)}" + (f"-pid{pid}" if pid else "")
    out = os.path.join(bundle_dir, name)
    n = 1
    while os.path.exists(out):
        n += 1
        out = os.path.join(bundle_dir, f"{name}.{n}")
    os.makedirs(out, mode=0o700)
    cap = capture_for(finding.id)
    files: list[str] = []
    missing: list[dict] = []
    summary: dict = {}
    started = time.monotonic()
    if cap.smaps:
        if pid:
            try:
                f, _ = _smaps(root, pid, out)
                files.append(f)
            except Unavailable as u:
                missing.append({"what": f"/proc/{pid}/smaps", "reason": u.reason})
        else:
            missing.append({"what": "smaps", "reason": "the finding names no process"})
    if cap.dstate:
        try:
            f, _, k = _dstate_stacks(root, out)
            files.append(f)
            summary["dstate_tasks"] = k
        except Unavailable as u:
            missing.append({"what": "D-state stacks", "reason": u.reason})
    if cap.recipe:
        try:
            fs, _, s = _recipe(root, cap.recipe, pid if cap.pid_option else None, seconds, out)
            files += fs
            summary.update(s)
        except Unavailable as u:
            missing.append({"what": f"trace {cap.recipe}", "reason": u.reason})
        except Exception as exc:  # a failed trace must not lose the rest of the bundle
            missing.append({"what": f"trace {cap.recipe}",
                            "reason": f"failed: {type(exc).__name__}: {exc}"})
    from ..render.jsonable import jsonable

    meta = {"rule": finding.id, "severity": finding.severity, "subject": _subject_dict(sub),
            "at": at, "took_seconds": round(time.monotonic() - started, 3), "files": files,
            "not_captured": missing, "summary": summary, "finding": jsonable(finding)}
    _write(os.path.join(out, "bundle.json"), json.dumps(meta, indent=1))
    return out


# ---- reading and bounding ------------------------------------------------------------------------
def load_bundles(bundle_dir: str | None) -> list[dict]:
    """Every bundle under bundle_dir: {rule, subject (Subject | None), at, path, files}. A bundle
    whose bundle.json is missing or unreadable (a capture killed half-way) is skipped."""
    out: list[dict] = []
    if not bundle_dir or not os.path.isdir(bundle_dir):
        return out
    for name in sorted(os.listdir(bundle_dir)):
        path = os.path.join(bundle_dir, name)
        try:
            with open(os.path.join(path, "bundle.json")) as f:
                meta = json.load(f)
            out.append({"rule": meta["rule"], "subject": _subject_of(meta.get("subject")),
                        "at": float(meta["at"]), "path": path, "files": meta.get("files", [])})
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return out


def dir_bytes(path: str) -> int:
    total = 0
    for dp, _dn, fns in os.walk(path):
        for fn in fns:
            try:
                total += os.lstat(os.path.join(dp, fn)).st_size
            except OSError:
                pass
    return total


def prune(bundle_dir: str, max_bytes: int, keep: str | None = None) -> list[str]:
    """Remove the oldest bundles until the directory holds at most max_bytes (never `keep`,
    the one just written). Returns the paths removed."""
    if not os.path.isdir(bundle_dir):
        return []
    entries = []
    for name in os.listdir(bundle_dir):
        p = os.path.join(bundle_dir, name)
        if os.path.isdir(p) and not os.path.islink(p):
            try:
                entries.append((os.stat(p).st_mtime, name, p, dir_bytes(p)))
            except OSError:
                continue
    entries.sort()
    total = sum(e[3] for e in entries)
    removed = []
    for _m, _n, p, b in entries:
        if total <= max_bytes:
            break
        if keep and os.path.abspath(p) == os.path.abspath(keep):
            continue
        shutil.rmtree(p, ignore_errors=True)
        total -= b
        removed.append(p)
    return removed


__all__ = ["CAPTURES", "Capture", "capture_for", "capture", "load_bundles", "prune",
           "bundle_dir_for", "dir_bytes", "CAPTURE_SECONDS"]
