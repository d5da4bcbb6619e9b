"""buflimit: sockets refused memory (sock:sock_exceed_buf_limit), send or receive side."""

from __future__ import annotations

from collections import Counter
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from .base import Recipe, RecipeResult

_LAST = ("sysctl_mem", "allocated", "sysctl_rmem", "rmem_alloc", "sysctl_wmem", "wmem_alloc",
         "wmem_queued")


@dataclass(frozen=True)
class Refused:
    proto: str                    # TCP, UDP, ...
    side: str                     # send | receive
    pid: int                      # receive side: whatever ran on the CPU (softirq context)
    comm: str
    count: int
    last: dict                    # the last event's allocation figures (pages / bytes, as traced)

    @property
    def limit_pages(self) -> int | None:
        """The protocol's hard memory limit (tcp_mem[2], ...) in pages, when traced."""
        lim = self.last.get("sysctl_mem")
        return lim[2] if lim else None


@dataclass(frozen=True, kw_only=True)
class BuflimitResult(RecipeResult):
    sockets: tuple[Refused, ...]


class Buflimit(Recipe):
    name = "buflimit"
    question = "sockets hitting their memory limit"
    events = ("sock:sock_exceed_buf_limit",)
    overhead = "low: fires only when a socket is refused memory"
    Result = BuflimitResult

    def __init__(self, root, **opts):
        super().__init__(root, **opts)
        self.c: Counter = Counter()
        self.last: dict = {}

    def on_event(self, e):
        kind = {0: "send", 1: "receive"}.get(e.get("kind"), str(e.get("kind")))
        key = (e.get("name", "?"), kind, e.pid, self.procs.comm(e.pid))
        self.c[key] += 1
        self.last[key] = {k: (tuple(v) if isinstance(v, list) else v)
                          for k in _LAST if (v := e.get(k)) is not None}

    def body(self):
        return {"sockets": tuple(Refused(k[0], k[1], k[2], k[3], n, self.last[k])
                                 for k, n in self.c.most_common())}
