"""Text of `ksight tcp --pcap FILE`: the flows that retransmit, then every retransmission."""

from __future__ import annotations

import time

from . import units

KINDS = {"retransmission": "retrans", "fast": "fast", "spurious": "spurious"}


def render(report, out, top: int = 20, rows: int = 50) -> None:
    w = out.write
    span = (report.last_time - report.first_time) if report.first_time is not None else 0.0
    start = (time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(report.first_time)) + " UTC"
             if report.first_time is not None else "-")
    w(f"{report.path}: {report.format}, {units.number(report.packets)} packets "
      f"({units.number(report.tcp_packets)} TCP) over {units.duration(span)} from {start}\n")
    for p in report.problems:
        w(f"  ! {p}\n")
    if report.skipped:
        w("  not analysed: " + ", ".join(f"{n} {why}" for why, n in sorted(report.skipped.items()))
          + "\n")
    n = len(report.retransmissions)
    kinds = report.by_kind
    w(f"\nRetransmissions (what `tshark -Y tcp.analysis.retransmission` marks): {units.number(n)}")
    if n:
        w(" = " + ", ".join(f"{units.number(kinds.get(k, 0))} {label}"
                            for k, label in (("retransmission", "after a timeout or loss"),
                                             ("fast", "fast (after duplicate ACKs)"),
                                             ("spurious", "spurious (data already ACKed)"))
                            if kinds.get(k)))
    w("\n")
    if not report.flows:
        w("  no TCP flow in the file\n")
        return
    flows = sorted(report.flows, key=lambda f: (-f.retransmissions, f.index))
    bad = [f for f in flows if f.retransmissions]
    w(f"\nFlows: {units.number(len(report.flows))}, {units.number(len(bad))} with "
      f"retransmissions{' (top ' + str(top) + ')' if len(bad) > top else ''}\n")
    if bad:
        w(f"  {'FLOW':>5} {'CLIENT':<24} {'SERVER':<24} {'PACKETS':>8} {'DATA':>9} "
          f"{'RETRANS':>7} {'OF DATA':>7}\n")
        for f in bad[:top]:
            share = 100.0 * f.retransmitted_bytes / f.data_bytes if f.data_bytes else None
            w(f"  {f.index:>5} {f.client:<24} {f.server:<24} {units.number(f.packets):>8} "
              f"{units.size(f.data_bytes):>9} {units.number(f.retransmissions):>7} "
              f"{units.pct(share):>7}\n")
    if not n:
        return
    w(f"\nRetransmitted segments{' (first ' + str(rows) + ')' if n > rows else ''}\n")
    w(f"  {'FRAME':>7} {'TIME':>10} {'FLOW':>5} {'FROM':<24} {'TO':<24} {'SEQ':>11} {'LEN':>6}  KIND\n")
    for r in report.retransmissions[:rows]:
        w(f"  {r.frame:>7} {r.rel_time:>10.6f} {r.flow:>5} {r.src:<24} {r.dst:<24} "
          f"{r.rel_seq:>11} {r.length:>6}  {KINDS.get(r.kind, r.kind)}"
          f"{' ' + r.flags if r.flags else ''}\n")
    w("\n  TIME: seconds since the first packet; SEQ: relative to the sender's first sequence "
      "number (tshark's tcp.seq)\n")
