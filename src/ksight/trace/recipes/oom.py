"""oom: OOM victims (oom:mark_victim), with their memory, cgroup and constraint.

The constraint (memcg, cpuset, global) is not in the tracepoint; the kernel log line
'oom-kill:constraint=...,task_memcg=...,pid=N' carries it, read from the end of /dev/kmsg
(trace/kmsg.py)."""

from __future__ import annotations

from dataclasses import replace
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..kmsg import Follower, oom_kill
from .base import Recipe, RecipeResult


@dataclass(frozen=True)
class Victim:
    pid: int
    comm: str
    total_vm_kb: int | None
    anon_rss_kb: int | None
    file_rss_kb: int | None
    shmem_rss_kb: int | None
    uid: int | None
    oom_score_adj: int | None
    cgroup: str | None            # the victim's memory cgroup
    constraint: str | None        # CONSTRAINT_MEMCG, CONSTRAINT_NONE, ... (kernel log)
    oom_memcg: str | None         # the cgroup whose limit was hit (kernel log)
    killer_pid: int               # the task running when the victim was marked


@dataclass(frozen=True, kw_only=True)
class OomResult(RecipeResult):
    victims: tuple[Victim, ...]


class Oom(Recipe):
    name = "oom"
    question = "OOM kills"
    events = ("oom:mark_victim",)
    overhead = "none to speak of: fires once per OOM kill"
    Result = OomResult

    def __init__(self, root, **opts):
        super().__init__(root, **opts)
        self.victims: list[Victim] = []
        self._kmsg: Follower | None = None

    def session(self, seconds=10, **kw):
        self._kmsg = Follower().open()   # new records only
        return super().session(seconds, **kw)

    def on_event(self, e):
        vpid = e["pid"]
        comm, cg = self.procs.get(vpid) if vpid else ("?", None)
        self.victims.append(Victim(vpid, e.get("comm") or comm, e.get("total_vm"), e.get("anon_rss"),
                                   e.get("file_rss"), e.get("shmem_rss"), e.get("uid"),
                                   e.get("oom_score_adj"), cg, None, None, e.pid))

    def body(self):
        log: dict[int, dict] = {}
        if self._kmsg is not None:
            for msg in self._kmsg.read_new():
                kv = oom_kill(msg)
                if kv:
                    log[int(kv["pid"])] = kv
        victims = []
        for v in self.victims:
            kv = log.get(v.pid)
            if kv:
                v = replace(v, constraint=kv.get("constraint"), oom_memcg=kv.get("oom_memcg"),
                            cgroup=v.cgroup or kv.get("task_memcg"))
            victims.append(v)
        notes = []
        if victims and not log:
            why = f" ({self._kmsg.reason})" if self._kmsg and self._kmsg.reason else ""
            notes.append(f"constraint unknown: no oom-kill line in the kernel log (/dev/kmsg){why}")
        return {"victims": tuple(victims), "notes": notes}
