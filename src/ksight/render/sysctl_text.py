"""Text of `ksight sysctl --area AREA`: each group's knobs, current value against the
recommendation, and for the ones to review: why, what goes wrong, the line to set it."""

from __future__ import annotations

import textwrap

WIDTH = 100
MARK = {"ok": "ok", "review": "REVIEW", "absent": "absent", "unreadable": "?"}


def _wrap(text: str, indent: str) -> str:
    return "\n".join(textwrap.wrap(text, WIDTH, initial_indent=indent,
                                   subsequent_indent=indent)) + "\n"


def render(audit, out, verbose: bool = False) -> None:
    w = out.write
    n = len(audit.to_review)
    w(f"sysctl audit, area {audit.area}: {len(audit.knobs)} settings, {n} to review\n")
    groups = list(audit.groups) + sorted({k.group for k in audit.knobs} - set(audit.groups))
    for g in groups:
        knobs = [k for k in audit.knobs if k.group == g]
        if not knobs and not (audit.routes or audit.routes_note) or (
                not knobs and g != "ports and routes"):
            continue
        w(f"\n{g}\n")
        for k in knobs:
            cur = k.current if k.current is not None else "-"
            w(f"  {MARK.get(k.status, k.status):<7} {k.name:<34} {cur:<24} want {k.recommended}\n")
            if k.note:
                w(_wrap(k.note, " " * 10))
            if k.status == "review" or verbose:
                w(_wrap("why: " + k.why, " " * 10))
                w(_wrap("if wrong: " + k.wrong, " " * 10))
            if k.status == "review" and k.set_to is not None:
                w(f"          set: sysctl -w {k.name}='{k.set_to}'   (persist in /etc/sysctl.d/)\n")
        if g == "ports and routes":
            _routes(audit, w)
    if n:
        w(f"\n{n} setting(s) to review; -v shows why and the consequence for every setting.\n")


def _routes(audit, w) -> None:
    if audit.routes is None:
        if audit.routes_note:
            w(f"  ?       initcwnd (per route)                 {audit.routes_note}\n")
        return
    r = audit.routes
    w(f"  {MARK.get(r.status, r.status):<7} {'initcwnd (per route)':<34} "
      f"{len(r.routes)} unicast routes   want 10 (the default) or more\n")
    w(_wrap(r.note, " " * 10))
    for rt in r.routes:
        if rt.initcwnd is not None or rt.initrwnd is not None:
            w(f"          {rt.destination} dev {rt.dev or '-'} table {rt.table}: initcwnd "
              f"{rt.initcwnd if rt.initcwnd is not None else '-'} initrwnd "
              f"{rt.initrwnd if rt.initrwnd is not None else '-'}\n")
