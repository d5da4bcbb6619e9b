"""/proc/PID/oom_score and /proc/PID/oom_score_adj: the OOM killer's badness score for the
process (0..1000 in points of memory share, plus the adjustment) and the adjustment itself
(-1000 = never kill, +1000 = kill first)."""

from __future__ import annotations

from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ...fs import Root
from .._text import require_complete, to_int


@dataclass(frozen=True)
class OomInfo:
    score: int
    score_adj: int


def _one(text: str, path: str, signed: bool) -> int:
    require_complete(text, path)
    t = text.strip()
    return to_int(t, path, 1, t, signed=signed)


def parse(score_text: str, adj_text: str, score_path: str = "proc/PID/oom_score",
          adj_path: str = "proc/PID/oom_score_adj") -> OomInfo:
    # oom_score is printed %lu, oom_score_adj %d (-1000..1000)
    return OomInfo(_one(score_text, score_path, False), _one(adj_text, adj_path, True))


def read_oom(root: Root, pid: int) -> OomInfo:
    sp, ap = f"proc/{pid}/oom_score", f"proc/{pid}/oom_score_adj"
    return parse(root.read_text(sp), root.read_text(ap), sp, ap)


read = read_oom
