"""tcp.retransmission-rate: the share of segments sent again, per interval, per namespace."""

from __future__ import annotations

from ....model import tcp as m
from ...enrich import enrichment
from ...finding import Action, Evidence, Finding
from ...rule import Context, Rule, Threshold
from .common import ns_file, ns_subject, tcp_rule, where

# `ksight check` live as root traces the flows behind a finding for about a second (an
# enrichment: diagnose/enrich.py runs it after the rules, never on `--from`)
ENRICH_SECONDS = 1.0


def _in_netns(flows, label: str | None, own: bool) -> tuple:
    """The traced flows of one namespace: the tracepoint sees every namespace, and two
    namespaces may use the same addresses. A flow whose owner was not found is kept only for
    ksight's own namespace (where /proc/net/tcp would have named it otherwise)."""
    out = []
    for f in flows:
        owner_ns = getattr(f.owner, "netns", None) if f.owner is not None else None
        if owner_ns is not None:
            if owner_ns == label:
                out.append(f)
        elif own:
            out.append(f)
    return tuple(out)


@tcp_rule("tcp.retransmission-rate", title="TCP segments are retransmitted",
          needs=("snmp",), counters=(m.RETRANS_SEGS, m.OUT_SEGS), uses=("netstat",),
          thresholds={
              "warn_pct": Threshold(1.0, "% of segments sent, in an interval",
                                    "above ~1 % loss, TCP throughput falls sharply (Mathis: rate "
                                    "~ MSS/(RTT*sqrt(p))) and tail latency grows with every RTO"),
              "critical_pct": Threshold(5.0, "% of segments sent, in an interval",
                                        "a link or path losing one segment in twenty: timeouts "
                                        "and collapsed windows, users see stalls"),
              "min_segments": Threshold(500, "segments sent in the interval",
                                        "below this a handful of keepalive or SYN retries would "
                                        "read as a huge share; judge only intervals with traffic"),
              "min_retrans": Threshold(10, "segments retransmitted in the interval",
                                       "a few retransmits are normal on any network"),
          })
def retransmission_rate(ctx: Context, r: Rule):
    """ΔRetransSegs / ΔOutSegs × 100 per interval (/proc/net/snmp Tcp, per network namespace),
    judged in the worst interval that sent at least min_segments. Evidence: the rate over the
    window and since boot, the TcpExt breakdown (TCPFastRetrans: loss found by duplicate ACKs or
    SACK, the path drops; TCPTimeouts: RTOs, nothing came back; TCPLossProbes: tail-loss probes;
    TCPSynRetrans: SYNs and SYN-ACKs resent, a peer or listener not answering). Live and root,
    the flows behind it come from tcp:tcp_retransmit_skb for about a second."""
    s = ctx.series
    out = []
    for ns in m.scopes(s):
        rt = m.retransmission(s, ns, min_segments=int(r.t("min_segments")))
        if rt.peak_pct is None or rt.peak_pct < r.t("warn_pct"):
            continue
        i = rt.peak_interval
        if (rt.retrans_per_interval[i] or 0) < r.t("min_retrans"):
            continue
        own = m.is_own(s, ns)
        snmp = ns_file("/proc/net/snmp", ns, s)
        netstat = ns_file("/proc/net/netstat", ns, s)
        secs = s.seconds_per_interval[i]
        ev = [ctx.ev("retransmitted", rt.peak_pct, "% of segments sent", snmp,
                     threshold=r.t("warn_pct"),
                     note=(f"{rt.retrans_per_interval[i]:,} of {rt.out_segs_per_interval[i]:,} "
                           f"segments in interval {i + 1} of {s.intervals}"
                           + (f" ({secs:.3g} s)" if secs else "")))]
        if rt.pct is not None:
            ev.append(ctx.ev("over the window", rt.pct, "%", snmp,
                             note=f"{rt.retrans_segs:,} of {rt.out_segs:,} segments"))
        if rt.since_boot_pct is not None:
            ev.append(ctx.ev("since boot", rt.since_boot_pct, "%", snmp,
                             note=f"{rt.retrans_segs_since_boot:,} of {rt.out_segs_since_boot:,}"))
        for k in rt.breakdown:
            if k.window:
                ev.append(ctx.ev(k.name, k.window, "over the window", netstat,
                                 note=f"{k.counter}; {k.since_boot:,} since boot"
                                 if k.since_boot is not None else k.counter))
        kinds = {k.name: k.window or 0 for k in rt.breakdown}
        cause = ("mostly timeouts (RTO): segments and their ACKs are lost outright, or the peer "
                 "stopped answering" if kinds.get("timeouts (RTO)", 0) > kinds.get("fast retransmits", 0)
                 else "mostly fast retransmits: the path drops or reorders segments while ACKs "
                 "still flow (congestion, a lossy link, a full queue on the way)")
        if kinds.get("SYN retransmits", 0) and kinds["SYN retransmits"] >= sum(kinds.values()) / 2:
            cause = ("mostly SYN retransmits: connection attempts are not answered (a listener "
                     "overflowing, a firewall dropping, a host down)")
        acts = [
            Action.command("ksight trace retrans 10  # the flows that retransmit, with their process"),
            Action.command("ksight tcp --connections  # per-connection retransmits, rtt, cwnd"),
            Action.command("ip -s link; tc -s qdisc  # drops on the interfaces and queues on the way"),
            Action.command("ksight tcp --pcap FILE  # retransmissions in a packet capture"),
        ]
        pk = rt.peak_pct
        return_sev = "critical" if pk >= r.t("critical_pct") else "warning"
        out.append(r.finding(
            return_sev, ev,
            f"{pk:.1f} % of the TCP segments sent {where(ns, own)} were retransmitted in the "
            f"worst interval: {cause}. Each loss halves the congestion window (or resets it after "
            f"a timeout), so throughput falls and latency rises for the flows concerned.",
            acts, subject=ns_subject(ns)))
    return out or None


@enrichment("retransmitting-flows", rules=("tcp.retransmission-rate",), what="flows",
            source="tcp:tcp_retransmit_skb", split=lambda traced, f: _flows_of(traced, f))
def trace_flows(finding: Finding):
    """One trace of tcp:tcp_retransmit_skb for every finding of the rule (the tracepoint sees
    every namespace); `_flows_of` gives each finding its namespace's flows."""
    import os

    from ....errors import Unavailable
    from ....trace.recipes.retrans import top_flows

    if os.geteuid() != 0:
        raise Unavailable("tcp:tcp_retransmit_skb", "tracing needs root")
    try:
        own = os.readlink("/proc/self/ns/net")
    except OSError:
        own = None
    flows, why = top_flows(seconds=ENRICH_SECONDS, top=20)
    return flows, why, own


def _flows_of(traced, f: Finding) -> list[Evidence]:
    flows, why, own_label = traced
    label = f.subject.netns if f.subject is not None else None
    mine = _in_netns(flows, label, label is None or label == own_label)
    out = []
    for fl in mine[:5]:
        who = f" {fl.owner.comm}[{fl.owner.pid}]" if fl.owner is not None else ""
        out.append(Evidence(f"flow {fl.saddr}:{fl.sport} -> {fl.daddr}:{fl.dport}", fl.retransmits,
                            f"retransmits in {ENRICH_SECONDS:g} s", "tcp:tcp_retransmit_skb", None,
                            f"{fl.state or '?'}{who}"))
    if why:
        out.append(Evidence("flows", "not traced", "", "tcp:tcp_retransmit_skb", None, why))
    elif not mine:
        out.append(Evidence("flows", "none seen", "", "tcp:tcp_retransmit_skb", None,
                            f"no retransmission of this namespace in the {ENRICH_SECONDS:g} s traced"))
    return out
