"""Recipes: a trace named by what the person wants to know, one module each.

    from ksight.fs import LiveRoot
    from ksight.trace import recipes
    r = recipes.get("reclaim")(LiveRoot())
    with r.session(seconds=5) as t:
        workload()          # or t.wait()
    res = r.result(t)      # a frozen dataclass (reclaim.ReclaimResult); JSON via render.jsonable
    print(ksight.render.trace_text.render(res))

A recipe reads the kernel only through the Root it is given. A tracefs recipe aggregates in
`on_event` (called from the reader thread every ~0.1 s, so the process behind a PID is looked
up while it still exists); memory stays bounded by the number of distinct keys, not events.
"""

from __future__ import annotations

from .base import MissingEvent, Recipe, RecipeResult, log2_bucket
from .buflimit import Buflimit
from .compaction import Compaction
from .kmalloc import Kmalloc
from .mmap import Mmap
from .oom import Oom
from .reclaim import Reclaim
from .retrans import Retrans
from .softirq import Softirq
from .writeback import Writeback

RECIPES: dict[str, type[Recipe]] = {r.name: r for r in (
    Retrans, Reclaim, Compaction, Writeback, Buflimit, Mmap, Oom, Kmalloc, Softirq)}
# `ksight trace profile` is no recipe: it is `ksight profile` (cli/trace.py hands it over)


def get(name: str) -> type[Recipe]:
    from ...errors import UsageError

    try:
        return RECIPES[name]
    except KeyError:
        raise UsageError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}") from None


__all__ = ["RECIPES", "get", "Recipe", "RecipeResult", "MissingEvent", "log2_bucket",
           "Retrans", "Reclaim", "Compaction", "Writeback", "Buflimit", "Mmap", "Oom", "Kmalloc",
           "Softirq"]
