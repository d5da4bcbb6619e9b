"""What the TCP and net rules share: the per-namespace needs, subjects and a few helpers."""

from __future__ import annotations

import dataclasses

from ....model import tcp as m
from ...finding import Subject
from ...rule import RULES, rule

NET_SOURCES = ("snmp", "netstat", "sockstat")


def tcp_rule(id: str, *, netns_counters: bool = True, socket_owners: tuple[str, ...] = (), **kw):
    """@rule, with the per-namespace counters (Needs.netns_counters) when asked: the rule judges
    every namespace the socket collection found, not only ksight's own. `socket_owners`: the
    states of the sockets whose process (pid, comm) the rule names in its findings ("*": any);
    `check` resolves those owners only after the rule found something (Plan.owners_later)."""
    base = rule(id, **kw)

    def deco(func):
        base(func)
        if netns_counters or socket_owners:
            r = RULES[id]
            RULES[id] = dataclasses.replace(r, needs=dataclasses.replace(
                r.needs, netns_counters=netns_counters or r.needs.netns_counters,
                socket_owners=tuple(socket_owners)))
        return func

    return deco


def ns_subject(netns: int | None, **kw) -> Subject:
    return Subject(netns=m.netns_label(netns), **kw)


def where(netns: int | None, own: bool) -> str:
    if netns is None:
        return "in ksight's network namespace"
    return ("in ksight's network namespace " if own else "in network namespace ") + f"net:[{netns}]"


def ns_file(path: str, netns: int | None, series) -> str:
    """The file a per-namespace counter came from: /proc/PID/net/... for another namespace."""
    if netns is None or m.is_own(series, netns):
        return path
    t = m.ns_table(series.last)
    c = t.get(netns) if t is not None else None
    if c is not None and c.pid is not None:
        return path.replace("/proc/", f"/proc/{c.pid}/", 1)
    return path


def ns_sysctl_ev(ctx, sx, netns: int | None, unit: str = "", note: str | None = None):
    """Evidence for a sysctl as it applies in a namespace (model.tcp.ns_sysctl): its value, and
    whose value it is when the namespace is not ksight's own."""
    where_from = sx.note(netns)
    text = "; ".join(x for x in (note, where_from) if x) or None
    value = sx.value if sx.value is not None else sx.text
    return ctx.ev(sx.name, value, unit, sx.path, note=text)


def ns_why(sx, netns: int | None, why: str, value) -> str:
    """An action's why, with how to apply it inside another namespace."""
    cmd = sx.sysctl_command(netns, value)
    return why + (f"; it is per network namespace: set it in net:[{netns}] ({cmd})" if cmd else "")


def toward(current: int | None, target: int, up: bool = True) -> int:
    """A recommended value that never steps the wrong way."""
    if current is None:
        return target
    return max(current, target) if up else min(current, target)


def socket_table(ctx, needs: str | None = None):
    """The last snapshot's socket table, or CannotLook when it could not be read at all. On a
    recording (a socket summary, no table) the reason says what the rule needs of each socket
    that the summary does not keep (`needs`)."""
    miss = ctx.last.missing("sockets")
    if ctx.last.sockets is None and ctx.last.get("socket_summary") is not None:
        raise ctx.cannot_look("a recording keeps the socket summary (sockets per state, owner and "
                              "namespace; listeners' queues), not the socket table"
                              + (f": this rule needs {needs}" if needs else ""))
    if ctx.last.sockets is None or miss is not None:
        raise ctx.cannot_look(f"sockets: {miss.reason if miss else 'not collected'}")
    return ctx.last.sockets


def socket_facts(ctx, strict: bool = False) -> str:
    """What the socket facts come from, for evidence: "sock_diag" (the table), or "socket_summary"
    on a recording (model/sockets.py); CannotLook when neither was read (strict: also when the
    table was read with something missing, socket_table)."""
    if ctx.last.sockets is not None:
        if strict:
            socket_table(ctx)
        return "sock_diag"
    if ctx.last.get("socket_summary") is not None:
        return "socket_summary"
    socket_table(ctx)
    return "sock_diag"
