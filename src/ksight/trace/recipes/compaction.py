"""compaction: who stalls in memory compaction, and for how long (kcompactd flagged)."""

from __future__ import annotations

from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from .base import Recipe, RecipeResult

# enum compact_result (include/linux/compaction.h), as mm_compaction_end's `status` numbers it
END_STATUS = {0: "not_suitable_zone", 1: "skipped", 2: "deferred", 3: "no_suitable_page",
              4: "continue", 5: "complete", 6: "partial_skipped", 7: "contended", 8: "success"}


@dataclass(frozen=True)
class CompactionStalls:
    pid: int
    comm: str
    kcompactd: bool
    direct_stalls: int
    runs: int
    total_usec: float
    max_usec: float


@dataclass(frozen=True, kw_only=True)
class CompactionResult(RecipeResult):
    processes: tuple[CompactionStalls, ...]
    end_status: dict[str, int]


class Compaction(Recipe):
    name = "compaction"
    question = "memory compaction stalls"
    events = ("compaction:mm_compaction_try_to_compact_pages", "compaction:mm_compaction_begin",
              "compaction:mm_compaction_end", "compaction:mm_compaction_stall")
    alternatives = {"compaction:mm_compaction_stall": "compaction:mm_compaction_try_to_compact_pages"}
    overhead = "low: events fire per compaction run, which is itself expensive and rare"
    Result = CompactionResult

    def __init__(self, root, **opts):
        super().__init__(root, **opts)
        self.begin: dict = {}
        self.by_proc: dict = {}
        self.status: dict[int, int] = {}

    def on_event(self, e):
        n = e.name.rsplit(":", 1)[1]
        comm = self.procs.comm(e.pid)
        acc = self.by_proc.setdefault((e.pid, comm), [0, 0, 0.0, 0.0])  # stalls runs total max
        if n in ("mm_compaction_try_to_compact_pages", "mm_compaction_stall"):
            acc[0] += 1
        elif n == "mm_compaction_begin":
            self.begin[e.pid] = e.ts
        elif n == "mm_compaction_end":
            st = e.get("status")
            self.status[st] = self.status.get(st, 0) + 1
            t0 = self.begin.pop(e.pid, None)
            if t0 is not None:
                usec = (e.ts - t0) / 1000
                acc[1] += 1
                acc[2] += usec
                acc[3] = max(acc[3], usec)

    def body(self):
        procs = [CompactionStalls(pid, comm, comm.startswith("kcompactd"), *a)
                 for (pid, comm), a in self.by_proc.items()]
        procs.sort(key=lambda r: (-r.total_usec, -r.direct_stalls))
        return {"processes": tuple(procs),
                "end_status": {END_STATUS.get(k, str(k)): v for k, v in self.status.items()}}
