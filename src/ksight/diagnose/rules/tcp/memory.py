"""TCP memory against tcp_mem, and buffer settings that cap throughput."""

from __future__ import annotations

from ....model import tcp as m
from ...finding import Action
from ...rule import Context, Rule, Threshold
from .common import ns_subject, socket_table, tcp_rule


@tcp_rule("tcp.memory-pressure", title="TCP memory near or above the tcp_mem pressure threshold",
          needs=("sockstat",), sysctls=("net.ipv4.tcp_mem",), uses=("netstat",),
          counters=(m.MEMORY_PRESSURES,), netns_counters=False,
          thresholds={
              "warn_share_of_pressure": Threshold(0.9, "of tcp_mem[1] (pressure), at the peak",
                                                  "at tcp_mem[1] the kernel shrinks every "
                                                  "socket's buffers: throughput drops everywhere"),
              "critical_share_of_high": Threshold(0.95, "of tcp_mem[2] (hard limit), at the peak",
                                                  "at tcp_mem[2] allocations fail: packets are "
                                                  "dropped and sockets aborted"),
          })
def memory_pressure(ctx: Context, r: Rule):
    """sockstat 'TCP: mem' (pages, machine-wide tcp_memory_allocated) at its peak over the
    window against net.ipv4.tcp_mem (low, pressure, high, in pages); TcpExt TCPMemoryPressures
    (entering pressure) and TCPAbortOnMemory (connections killed for memory) moving. The
    sockets holding the memory are the ones with the largest queues (sock_diag); the kernel's
    own sock_exceed_buf_limit events are traced by `ksight trace buflimit`."""
    s = ctx.series
    mem = m.tcp_memory(s)
    if mem.pressure is None or mem.high is None:
        raise ctx.cannot_look("net.ipv4.tcp_mem does not hold three values")
    pk = mem.peak_pages
    entered = mem.pressures.window or 0
    aborts = mem.aborts_on_memory.window or 0
    near = pk is not None and pk >= r.t("warn_share_of_pressure") * mem.pressure
    if not near and not entered and not aborts:
        return None
    crit = (pk is not None and pk >= r.t("critical_share_of_high") * mem.high) or aborts > 0
    kb = mem.page_size // 1024
    ev = [ctx.ev("TCP memory", pk, "pages", "/proc/net/sockstat", threshold=mem.pressure,
                 note=f"peak over the window ({(pk or 0) * kb:,} kB); now {mem.pages}"),
          ctx.ev("net.ipv4.tcp_mem", f"{mem.low} {mem.pressure} {mem.high}", "pages",
                 "/proc/sys/net/ipv4/tcp_mem", note="low, pressure, high"),
          ctx.ev("TCPMemoryPressures", entered if s.intervals else None, "over the window",
                 "/proc/net/netstat", note="times TCP entered memory pressure, every namespace"),
          ctx.ev("TCPAbortOnMemory", aborts if s.intervals else None, "over the window",
                 "/proc/net/netstat", note="connections reset for lack of memory, every namespace")]
    table = s.last.sockets
    if table is not None:
        big = sorted(table.sockets, key=lambda k: -(k.rx_queue + k.tx_queue))[:3]
        for k in big:
            if k.rx_queue + k.tx_queue <= 0:
                break
            who = f" {k.comm}[{k.pid}]" if k.pid is not None else ""
            ev.append(ctx.ev(f"queued {k.local_addr}:{k.local_port} -> {k.remote_addr}:"
                             f"{k.remote_port}", k.rx_queue + k.tx_queue, "bytes", "sock_diag",
                             note=f"recv {k.rx_queue}, send {k.tx_queue}{who}"))
    new = " ".join(str(v * 2) for v in (mem.low, mem.pressure, mem.high))
    acts = [Action.code("find the slow readers: sockets with a large receive queue belong to "
                        "processes that do not read fast enough (ksight tcp --connections)"),
            Action.sysctl("net.ipv4.tcp_mem", f"{mem.low} {mem.pressure} {mem.high}", new,
                          why="more memory for TCP buffers machine-wide (pages); only when the "
                              "memory is there: it is not available to anything else"),
            Action.command("ksight trace buflimit 10  # sock_exceed_buf_limit: who hits the limit")]
    return r.finding(
        "critical" if crit else "warning", ev,
        f"TCP buffers hold {pk} pages against tcp_mem pressure {mem.pressure} and limit "
        f"{mem.high}. Under pressure the kernel shrinks every socket's buffers (throughput "
        "falls); at the limit it drops incoming segments and aborts connections.",
        acts)


@tcp_rule("tcp.buffer-config", title="TCP buffer settings cap throughput",
          sysctls=("net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"), sockets=True, window=False,
          netns_counters=False, uses=("sysctl",),
          thresholds={
              "limited_share": Threshold(0.8, "of what the send buffer allows per RTT",
                                         "a flow delivering at >= 80 % of (sndbuf / 2) / rtt is "
                                         "bounded by its buffer, not by the network (half of "
                                         "sk_sndbuf is payload, the rest the kernel's overhead)"),
              "min_rtt_ms": Threshold(1.0, "ms round-trip time",
                                      "on shorter paths a few hundred kB always suffice"),
              "min_rate": Threshold(1_000_000, "bytes/s delivered",
                                    "a flow this slow is limited by its application, not its buffer"),
          })
def buffer_config(ctx: Context, r: Rule):
    """net.ipv4.tcp_moderate_rcvbuf=0 (receive autotuning off: every socket stays at
    tcp_rmem[1]); or established flows whose delivery rate (tcp_info) reaches what their send
    buffer allows, (sk_sndbuf / 2) / rtt (sock_diag skmeminfo; tcp_wmem[2] when not known): the
    buffer, not the path, caps them. A buffer below tcp_wmem[2] is pinned (SO_SNDBUF set by the
    application, capped at net.core.wmem_max, and autotuning off for that socket) or not yet
    grown; at tcp_wmem[2] the ceiling itself is too low for the path."""
    sc = ctx.get("sysctl")
    wmem, rmem = sc.ints("net.ipv4.tcp_wmem"), sc.ints("net.ipv4.tcp_rmem")
    moderate = ctx.sysctl("net.ipv4.tcp_moderate_rcvbuf")
    wmax_core, rmax_core = ctx.sysctl("net.core.wmem_max"), ctx.sysctl("net.core.rmem_max")
    if not wmem or not rmem or len(wmem) < 3 or len(rmem) < 3:
        raise ctx.cannot_look("tcp_wmem/tcp_rmem do not hold three values")
    limited = []
    for k in socket_table(ctx).sockets:
        if k.state != "ESTABLISHED" or not k.rtt_us or not k.delivery_rate:
            continue
        if k.rtt_us < r.t("min_rtt_ms") * 1000 or k.delivery_rate < r.t("min_rate"):
            continue
        buf = getattr(k, "sndbuf", None) or wmem[2]
        cap = buf / 2 / (k.rtt_us / 1e6)  # payload bytes/s a full send buffer allows
        if k.delivery_rate >= r.t("limited_share") * cap:
            limited.append((k, cap, buf))
    off = moderate == 0
    if not off and not limited:
        return None
    pinned = [x for x in limited if x[2] < wmem[2]]
    ceiling = [x for x in limited if x[2] >= wmem[2]]
    ev = [ctx.ev("net.ipv4.tcp_wmem", " ".join(map(str, wmem)), "bytes",
                 "/proc/sys/net/ipv4/tcp_wmem", note="min, default, max (autotuning)"),
          ctx.ev("net.ipv4.tcp_rmem", " ".join(map(str, rmem)), "bytes",
                 "/proc/sys/net/ipv4/tcp_rmem", note="min, default, max (autotuning)"),
          ctx.ev("net.core.wmem_max", wmax_core, "bytes", "/proc/sys/net/core/wmem_max",
                 note="the cap on SO_SNDBUF set by an application"),
          ctx.ev("net.core.rmem_max", rmax_core, "bytes", "/proc/sys/net/core/rmem_max",
                 note="the cap on SO_RCVBUF set by an application"),
          ctx.ev("net.ipv4.tcp_moderate_rcvbuf", moderate, "",
                 "/proc/sys/net/ipv4/tcp_moderate_rcvbuf")]
    for k, cap, buf in sorted(limited, key=lambda x: -x[0].delivery_rate)[:3]:
        who = f" {k.comm}[{k.pid}]" if k.pid is not None else ""
        ev.append(ctx.ev(f"flow {k.local_addr}:{k.local_port} -> {k.remote_addr}:{k.remote_port}",
                         k.delivery_rate, "bytes/s", "sock_diag", threshold=round(cap),
                         note=f"sndbuf {buf} bytes, rtt {k.rtt_us / 1000:.1f} ms, cwnd "
                              f"{k.cwnd}{who}"))
    acts = []
    if off:
        acts.append(Action.sysctl("net.ipv4.tcp_moderate_rcvbuf", moderate, 1,
                                  why="receive autotuning grows each socket's buffer to its "
                                      "bandwidth-delay product, up to tcp_rmem[2]"))
    if pinned:
        acts.append(Action.code("do not set SO_SNDBUF/SO_RCVBUF in the application, or set them "
                                "to the bandwidth-delay product: a fixed size turns autotuning "
                                "off for the socket and is capped at net.core.wmem_max/rmem_max"))
        if wmax_core is not None and wmax_core < wmem[2]:
            acts.append(Action.sysctl("net.core.wmem_max", wmax_core, wmem[2],
                                      why="lets an application that sets SO_SNDBUF ask as much "
                                          "as autotuning could grow to"))
    if ceiling:
        acts.append(Action.sysctl("net.ipv4.tcp_wmem", " ".join(map(str, wmem)),
                                  f"{wmem[0]} {wmem[1]} {max(wmem[2] * 2, 16 << 20)}",
                                  why="a larger send-buffer ceiling lets long-RTT flows fill the "
                                      "path (memory per socket grows only as needed)"))
    expl = []
    if off:
        expl.append("receive buffer autotuning is off (tcp_moderate_rcvbuf=0): every connection "
                    "keeps tcp_rmem's default size, whatever its bandwidth-delay product")
    if pinned:
        expl.append(f"{len(pinned)} flow(s) deliver as fast as a send buffer below tcp_wmem max "
                    "allows: pinned by SO_SNDBUF, or not grown")
    if ceiling:
        expl.append(f"{len(ceiling)} flow(s) deliver as fast as tcp_wmem max allows over their "
                    "RTT: the ceiling, not the network, limits them")
    text = "; ".join(expl)
    # the flow delivering the most of those the buffer caps (its process, its namespace); the
    # machine-wide setting alone (autotuning off) has no one subject
    subj = None
    if limited:
        k = max(limited, key=lambda x: x[0].delivery_rate)[0]
        subj = ns_subject(k.netns, socket=f"{k.local_addr}:{k.local_port} -> {k.remote_addr}:"
                                           f"{k.remote_port}", pid=k.pid, comm=k.comm)
    return r.finding("warning", ev, text[:1].upper() + text[1:] + ".", acts, subject=subj)
