"""`ksight export` for people: which files were written, rows and columns, and what was left
out."""

from __future__ import annotations

import datetime as _dt
from typing import IO


def _utc(t: float | None) -> str:
    if t is None:
        return "?"
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def render(res, out: IO[str]) -> None:
    if not res.snapshots:
        out.write("ksight export: no snapshot in the time range: nothing written\n")
    else:
        out.write(f"ksight export: {res.snapshots:,} snapshots ({_utc(res.first)} to "
                  f"{_utc(res.last)}) as {res.format} in {res.out_dir}\n")
    for t in res.tables:
        if t.path:
            out.write(f"  {t.path}: {t.rows:,} rows, {len(t.columns)} columns\n")
    for n in res.notes:
        out.write(f"  note: {n}\n")
