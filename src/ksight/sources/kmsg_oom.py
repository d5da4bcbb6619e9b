"""The OOM killer's lines in the kernel log (/dev/kmsg), grouped into one event per kill.

/dev/kmsg is a device, not a /proc file, and reading it to the end needs O_NONBLOCK (a blocking
read waits for the next message). So this source reads it only on the live root, keeps the
records that belong to OOM reports, and when the root is recording stores them in the capture as
`ksight/kmsg_oom.txt` (fs.record_extra), in /dev/kmsg's own record format, so a replay parses the
very same text. A capture without that file (or one whose log had already wrapped) cannot say
what the log said: Unavailable tells why. Not read unless named (`default=False`): the whole ring
buffer is read (up to a few MB), and kernel logs may hold what a capture should not share.

Record format (Documentation/ABI/testing/dev-kmsg): "PRIO,SEQ,TS_USEC,FLAGS[,...];TEXT", then
optional continuation lines starting with a space (dictionary: " SUBSYSTEM=...").

Lines of an OOM report (mm/oom_kill.c), oldest kernels to newest:
    <comm> invoked oom-killer: gfp_mask=0x100cca(GFP_HIGHUSER_MOVABLE), order=0, oom_score_adj=0
    Task in /a killed as a result of limit of /a                       (memcg, before 4.19)
    oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,
        oom_memcg=/a,task_memcg=/a/b,task=stress,pid=1234,uid=0         (4.19+; one line)
    Memory cgroup out of memory: Killed process 1234 (stress) total-vm:..kB, anon-rss:..kB,
        file-rss:..kB, shmem-rss:..kB, UID:0 pgtables:..kB oom_score_adj:0   (a cgroup's limit)
    Out of memory: Killed process 1234 (stress) ...                     (the whole machine)
    Out of memory: Kill process 1234 (stress) score 900 or sacrifice child
    Killed process 1234 (stress) total-vm:..kB, anon-rss:..kB, ...      (before 5.1: a 2nd line)
"constraint=CONSTRAINT_MEMCG" (or "Memory cgroup out of memory") means a memory cgroup hit its
limit; CONSTRAINT_NONE means the whole machine ran out; CONSTRAINT_CPUSET / CONSTRAINT_MEMORY_POLICY
mean the allowed nodes of a cpuset or mempolicy did.
"""

from __future__ import annotations

import os
import re
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..errors import ParseError, Unavailable
from ..fs import Root, record_extra
from ._text import to_int

PATH = "ksight/kmsg_oom.txt"
DEVICE = "dev/kmsg"
MAX_RECORDS = 1_000_000  # the ring buffer holds far fewer; this only bounds a device that never says EAGAIN
NO_CAPTURE = ("the capture holds no kernel log: /dev/kmsg is a device, read live only; a capture "
              "has it only when taken by `ksight capture` with the kmsg_oom source named")

_INVOKED = re.compile(r"^(?P<comm>.*?) invoked oom-killer: gfp_mask=(?P<gfp>[^,]+), "
                      r"order=(?P<order>-?\d+), oom_score_adj=(?P<adj>-?\d+)")
_TASK_IN = re.compile(r"^Task in (?P<task>\S+) killed as a result of limit of (?P<memcg>\S+)")
_KILLED = re.compile(r"^(?:(?P<kind>Memory cgroup out of memory|Out of memory(?: \([^)]*\))?): )?"
                     r"Kill(?:ed)? process (?P<pid>\d+) \((?P<comm>.*)\)(?P<rest>(?: total-vm:| score ).*|)$")
_KB = re.compile(r"(total-vm|anon-rss|file-rss|shmem-rss|pgtables):(\d+)kB")
_ADJ = re.compile(r"oom_score_adj:(-?\d+)")
_KEYS = ("constraint", "oom_memcg", "task_memcg", "task", "pid", "uid")
MARKERS = ("invoked oom-killer", "oom-kill:", "out of memory", "Out of memory", "Killed process",
           "Kill process", "killed as a result of limit")


@dataclass(frozen=True)
class OomEvent:
    ts_usec: int | None  # since boot (the record's timestamp)
    scope: str | None  # "cgroup" (a memory cgroup's limit), "system" (the whole machine), or None
    constraint: str | None = None  # CONSTRAINT_NONE / _MEMCG / _CPUSET / _MEMORY_POLICY (5.0+)
    invoker: str | None = None  # the task whose allocation failed
    gfp_mask: str | None = None
    order: int | None = None
    pid: int | None = None  # the victim
    comm: str | None = None
    oom_memcg: str | None = None  # the group whose limit was hit
    task_memcg: str | None = None  # the victim's group
    uid: int | None = None
    total_vm_kb: int | None = None
    anon_rss_kb: int | None = None
    file_rss_kb: int | None = None
    shmem_rss_kb: int | None = None
    pgtables_kb: int | None = None
    oom_score_adj: int | None = None


@dataclass(frozen=True)
class KmsgOom:
    events: tuple[OomEvent, ...] = ()
    records: int = 0  # records read from the log (live) or the capture


def _records(text: str, path: str):
    """(ts_usec, message) for each record; continuation lines (dictionary) are skipped."""
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line or line.startswith(" "):
            continue
        head, sep, msg = line.partition(";")
        parts = head.split(",")
        if not sep or len(parts) < 3:
            raise ParseError(path, lineno, line, "expected 'PRIO,SEQ,TS_USEC,FLAGS;TEXT'")
        for p in parts[:2]:
            to_int(p, path, lineno, line)
        yield to_int(parts[2], path, lineno, line), msg


def parse(text: str, path: str = PATH) -> KmsgOom:
    events: list[dict] = []
    cur: dict | None = None
    n = 0

    def start(ts):
        nonlocal cur
        cur = {"ts_usec": ts, "scope": None}
        events.append(cur)
        return cur

    def num(tok: str, signed: bool = False) -> int:
        return to_int(tok, path, None, tok, signed=signed)

    for ts, msg in _records(text, path):
        n += 1
        m = _INVOKED.match(msg)
        if m:
            e = start(ts)
            e.update(invoker=m["comm"], gfp_mask=m["gfp"], order=num(m["order"], True))
            continue
        if msg.startswith("oom-kill:"):
            e = cur if cur is not None and "constraint" not in cur else start(ts)
            body = msg[len("oom-kill:"):]
            for k in _KEYS:
                km = re.search(rf"(?:^|,){k}=([^,]*)", body)
                if km:
                    v = km.group(1)
                    e[{"task": "comm"}.get(k, k)] = num(v) if k in ("pid", "uid") else v
            c = e.get("constraint")
            if c:
                e["scope"] = "cgroup" if c == "CONSTRAINT_MEMCG" else "system" if c == "CONSTRAINT_NONE" else e["scope"]
            continue
        m = _TASK_IN.match(msg)
        if m:
            e = cur if cur is not None else start(ts)
            e.update(task_memcg=m["task"], oom_memcg=m["memcg"], scope="cgroup")
            continue
        m = _KILLED.match(msg)
        if m:
            pid = num(m["pid"])
            e = cur if cur is not None and e_open(cur, pid) else start(ts)
            e["pid"], e["comm"] = pid, m["comm"]
            if m["kind"]:
                e["scope"] = "cgroup" if m["kind"].startswith("Memory cgroup") else (e.get("scope") or "system")
            for k, v in _KB.findall(m["rest"] or ""):
                e[k.replace("-", "_") + "_kb"] = num(v)
            a = _ADJ.search(m["rest"] or "")
            if a:
                e["oom_score_adj"] = num(a.group(1), True)
    return KmsgOom(tuple(OomEvent(**e) for e in events), n)


def e_open(e: dict, pid: int) -> bool:
    """The event still takes a 'Killed process' line: no victim yet, or the same victim named
    again (the 2-line form of older kernels)."""
    return e.get("pid") in (None, pid) and "total_vm_kb" not in e


def _live_base(root: Root) -> str | None:
    r = root
    while hasattr(r, "inner"):
        r = r.inner
    return getattr(r, "base", None) if getattr(r, "live", False) else None


def read_log(base: str = "/") -> list[str]:
    """Every record of /dev/kmsg now in the ring buffer, as lines (non-blocking)."""
    path = os.path.join(base, DEVICE)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        why = e.strerror or str(e)
        if isinstance(e, PermissionError):
            why += " (kernel.dmesg_restrict=1 needs CAP_SYSLOG: run as root)"
        raise Unavailable("kmsg_oom", f"/{DEVICE}: {why}") from None
    out: list[str] = []
    try:
        for _ in range(MAX_RECORDS):
            try:
                chunk = os.read(fd, 16384)  # one record per read
            except BlockingIOError:
                break
            except BrokenPipeError:
                continue  # the record was overwritten while we read: the next one follows
            if not chunk:
                break
            out.append(chunk.decode("utf-8", "replace").rstrip("\n"))
    finally:
        os.close(fd)
    return out


def read(root: Root) -> KmsgOom:
    base = _live_base(root)
    if base is None:
        try:
            text = root.read_text(PATH)
        except Unavailable:
            raise Unavailable("kmsg_oom", NO_CAPTURE) from None
        return parse(text)
    recs = read_log(base)
    keep = [r for r in recs if any(k in r.split("\n", 1)[0] for k in MARKERS)]
    text = "".join(r.split("\n", 1)[0] + "\n" for r in keep)
    record_extra(root, PATH, text.encode())
    got = parse(text, "/dev/kmsg")
    return KmsgOom(got.events, len(recs))
