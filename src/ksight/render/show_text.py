"""Plain text rendering of a snapshot for `ksight show`: flattened name = value lines."""

from __future__ import annotations

import sys
import time
from typing import Any

from .jsonable import jsonable


def _flatten(prefix: str, obj: Any, out: list[tuple[str, Any]]) -> None:
    if isinstance(obj, dict):
        if not obj and prefix:
            out.append((prefix, "{}"))
        for k, v in obj.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(obj, list):
        if obj and all(not isinstance(v, (dict, list)) for v in obj):
            out.append((prefix, " ".join("-" if v is None else str(v) for v in obj)))
        else:
            for i, v in enumerate(obj):
                _flatten(f"{prefix}[{i}]", v, out)
    else:
        out.append((prefix, obj))


def render_snapshot(snap, file=None) -> None:
    file = file if file is not None else sys.stdout  # bound at call time, not at import
    h = snap.host
    try:  # a timestamp that is not a time (NaN, inf, -1e18) must not become a traceback
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(snap.taken_at)) if snap.taken_at else "time unknown"
    except (OverflowError, OSError, ValueError, TypeError):
        when = "time unknown"
    print(f"# {h.hostname or '?'}  kernel {h.kernel or '?'}  {when}  uptime {snap.uptime_s or '?'} s",
          file=file)
    for name, value in snap.sources.items():
        print(f"\n[{name}]", file=file)
        rows: list[tuple[str, Any]] = []
        _flatten("", jsonable(value), rows)
        for k, v in rows:
            if v is None:
                v = "(absent)"
            print(f"  {k} = {v}", file=file)
    if snap.processes is not None:
        print(f"\n[processes] {len(snap.processes)}", file=file)
    if snap.unavailable:
        print("\n[unavailable]", file=file)
        for m in snap.unavailable:
            print(f"  {m.source}: {m.reason}", file=file)
