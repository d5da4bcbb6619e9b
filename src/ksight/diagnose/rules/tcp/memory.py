"""TCP memory against tcp_mem, and buffer settings that cap throughput."""

from __future__ import annotations

from ....model import tcp as m
from ...finding import Action
from ...rule import Context, Rule, Threshold
from .common import ns_subject, socket_table, tcp_rule


@tcp_rule("tcp.memory-pressure", title="TCP memory near or above the tcp_mem pressure threshold",
          needs=("sockstat",), sysctls=("net.ipv4.tcp_mem",), uses=("netstat",),
          counters=(m.MEMORY_PRESSURES,), netns_counters=False, socket_owners=("*",),
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
          socket_owners=("ESTABLISHED",),
          uses=("sysctl",),
          thresholds={
              "sndbuf_limited_share": Threshold(0.5, "of the flow's busy time (tcp_info)",
                                                "more than half the time the flow had data to "
                                                "send, the kernel held it back for room in its "
                                                "send buffer: a larger buffer lets it send more"),
              "min_busy_ms": Threshold(200, "ms busy (with data to send) over the window, or "
                                            "over the connection's life from one snapshot",
                                       "the kernel counts in jiffies (1-10 ms): shorter "
                                       "transfers are too short to judge"),
              "limited_share": Threshold(0.8, "of what the send buffer allows per RTT "
                                              "(fallback: kernels before 4.10)",
                                         "a flow delivering at >= 80 % of (sndbuf / 2) / rtt is "
                                         "bounded by its buffer, not by the network (half of "
                                         "sk_sndbuf is payload, the rest the kernel's overhead)"),
              "min_rtt_ms": Threshold(1.0, "ms round-trip time (fallback)",
                                      "on shorter paths a few hundred kB always suffice"),
              "min_rate": Threshold(1_000_000, "bytes/s delivered (fallback)",
                                    "a flow this slow is limited by its application, not its buffer"),
          })
def buffer_config(ctx: Context, r: Rule):
    """net.ipv4.tcp_moderate_rcvbuf=0 (receive autotuning off: every socket stays at
    tcp_rmem[1]); or established flows the kernel held back for room in their send buffer:
    tcp_info's sndbuf_limited against busy_time (4.10+; `ss -ti` prints them), their growth over
    the window when the socket is in two snapshots or more, else over the connection's life.
    On kernels without these fields, an estimate: the delivery rate (tcp_info) reaching what the
    send buffer allows, (sk_sndbuf / 2) / rtt (sock_diag skmeminfo; tcp_wmem[2] when not
    known). A buffer below tcp_wmem[2] (the flow's namespace's own) is pinned (SO_SNDBUF set by
    the application, capped at net.core.wmem_max, and autotuning off for that socket) or not
    yet grown; at tcp_wmem[2] the ceiling itself is too low for the path."""
    sc = ctx.get("sysctl")
    wmem, rmem = sc.ints("net.ipv4.tcp_wmem"), sc.ints("net.ipv4.tcp_rmem")
    moderate = ctx.sysctl("net.ipv4.tcp_moderate_rcvbuf")
    wmax_core, rmax_core = ctx.sysctl("net.core.wmem_max"), ctx.sysctl("net.core.rmem_max")
    if not wmem or not rmem or len(wmem) < 3 or len(rmem) < 3:
        raise ctx.cannot_look("tcp_wmem/tcp_rmem do not hold three values")
    table = socket_table(ctx, "each socket's tcp_info (busy, send-buffer- and receive-window-"
                              "limited times) over the window")
    # per socket over the window: busy and send-buffer-limited usec (model/series deltas)
    s = ctx.series
    busy_w = s.entity_counters("sockets", lambda k: k.busy_time_us, "busy_time_us")
    snd_w = s.entity_counters("sockets", lambda k: k.sndbuf_limited_us, "sndbuf_limited_us")
    rwnd_w = s.entity_counters("sockets", lambda k: k.rwnd_limited_us, "rwnd_limited_us")
    last = s.entities("sockets")[-1]  # key -> socket of the last snapshot (table's sockets)
    limited = []  # (socket, sort weight, buffer, evidence value, threshold, note, unit)
    wmax_ns: dict = {}  # netns -> its own tcp_wmem max (per namespace since 4.15)
    for key, k in (last.items() if last else ((None, k) for k in table.sockets)):
        if k.state != "ESTABLISHED":
            continue
        if k.netns not in wmax_ns:
            w = m.ns_sysctl(s.last, "net.ipv4.tcp_wmem", k.netns).ints
            wmax_ns[k.netns] = w[2] if w and len(w) >= 3 else wmem[2]
        wmax = wmax_ns[k.netns]
        buf = getattr(k, "sndbuf", None) or wmax
        who = f" {k.comm}[{k.pid}]" if k.pid is not None else ""
        busy = getattr(k, "busy_time_us", None)
        if busy is not None:  # the kernel measured it
            b, sl, rw = (busy_w.get(key), snd_w.get(key), rwnd_w.get(key)) if key else (None,) * 3
            if b is not None and b.total is not None and sl is not None and sl.total is not None:
                span = f"over the window ({b.covered_seconds:.1f} s)"
                busy, snd = b.total, sl.total
                rwnd = rw.total if rw is not None else None
            else:
                span = "over the connection's life (one snapshot of it)"
                snd, rwnd = k.sndbuf_limited_us, k.rwnd_limited_us
            if busy < r.t("min_busy_ms") * 1000 or snd is None:
                continue
            share = snd / busy
            if share >= r.t("sndbuf_limited_share"):
                rw_note = (f", rwnd_limited {rwnd / 1000:.0f} ms ({100 * rwnd / busy:.1f} %)"
                           if rwnd is not None else "")
                limited.append((k, snd, buf, wmax, round(100 * share, 1),
                                round(100 * r.t("sndbuf_limited_share")),
                                f"sndbuf_limited {snd / 1000:.0f} ms of busy {busy / 1000:.0f} ms "
                                f"{span}{rw_note} (tcp_info); sndbuf {buf} bytes, rtt "
                                f"{(k.rtt_us or 0) / 1000:.1f} ms, cwnd {k.cwnd}{who}", "%"))
            continue
        # fallback, kernels before 4.10 (tcp_info without sndbuf_limited): an estimate
        if not k.rtt_us or not k.delivery_rate:
            continue
        if k.rtt_us < r.t("min_rtt_ms") * 1000 or k.delivery_rate < r.t("min_rate"):
            continue
        cap = buf / 2 / (k.rtt_us / 1e6)  # payload bytes/s a full send buffer allows
        if k.delivery_rate >= r.t("limited_share") * cap:
            limited.append((k, k.delivery_rate, buf, wmax, k.delivery_rate, round(cap),
                            f"estimated: delivery rate against (sndbuf / 2) / rtt, this kernel's "
                            f"tcp_info has no sndbuf_limited (before 4.10); sndbuf {buf} bytes, "
                            f"rtt {k.rtt_us / 1000:.1f} ms, cwnd {k.cwnd}{who}", "bytes/s"))
    off = moderate == 0
    if not off and not limited:
        return None
    pinned = [x for x in limited if x[2] < x[3]]  # below its namespace's tcp_wmem max
    ceiling = [x for x in limited if x[2] >= x[3]]
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
    for k, _w, buf, _wmax, value, thr, note, unit in sorted(limited, key=lambda x: -x[1])[:3]:
        name = "sndbuf-limited" if unit == "%" else "flow"
        ev.append(ctx.ev(f"{name} {k.local_addr}:{k.local_port} -> {k.remote_addr}:"
                         f"{k.remote_port}", value, unit, "sock_diag", threshold=thr, note=note))
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
        expl.append(f"{len(pinned)} flow(s) held back by a send buffer below tcp_wmem max: "
                    "pinned by SO_SNDBUF, or not grown")
    if ceiling:
        expl.append(f"{len(ceiling)} flow(s) held back by a send buffer at tcp_wmem max: the "
                    "ceiling, not the network, limits them")
    text = "; ".join(expl)
    # the flow delivering the most of those the buffer caps (its process, its namespace); the
    # machine-wide setting alone (autotuning off) has no one subject
    subj = None
    if limited:
        k = max(limited, key=lambda x: x[1])[0]
        subj = ns_subject(k.netns, socket=f"{k.local_addr}:{k.local_port} -> {k.remote_addr}:"
                                           f"{k.remote_port}", pid=k.pid, comm=k.comm)
    return r.finding("warning", ev, text[:1].upper() + text[1:] + ".", acts, subject=subj)
