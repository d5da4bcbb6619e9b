"""net.tx-drops and net.softnet-squeeze."""

from __future__ import annotations

from ....model import tcp as m
from ...finding import Action, Subject
from ...rule import Context, Rule, Threshold, rule
from ..tcp.common import tcp_rule, where


def _toward(cur: int | None, target: int) -> int:
    return target if cur is None else max(cur, target)


@tcp_rule("net.tx-drops", title="An interface drops packets on transmit",
      needs=("netdev",), uses=("netclass",),
      thresholds={
          "warn_per_s": Threshold(1, "TX drops/s on one interface, in an interval",
                                  "a healthy interface drops nothing on transmit"),
          "critical_per_s": Threshold(100, "TX drops/s on one interface, in an interval",
                                      "a steady stream of lost packets: retransmissions follow"),
      })
def tx_drops(ctx: Context, r: Rule):
    """/proc/net/dev tx 'drop' per interface (the qdisc or driver dropped a packet it was given:
    a full queue, txqueuelen too short for the bursts, or a device that cannot keep up), judged
    per interval, in every network namespace (/proc/PID/net/dev: a container's veth is only
    there); txqueuelen from /sys/class/net/IF/tx_queue_len in ksight's own namespace."""
    s = ctx.series
    out = []
    for nic in m.nic_tx(s):
        peak = nic.tx_drop_peak_per_s
        if peak is None or peak < r.t("warn_per_s"):
            continue
        cs = nic.drops
        dev = "/proc/net/dev" if nic.own or nic.pid is None else f"/proc/{nic.pid}/net/dev"
        ev = [ctx.ev("tx drops", peak, "/s", dev, threshold=r.t("warn_per_s"),
                     note=ctx.peak_note(cs.peak, cs.mean_rate) if cs is not None else None),
              ctx.ev("tx drops over the window", nic.tx_drop, "packets", dev,
                     note=f"of {nic.tx_packets:,} sent" if nic.tx_packets is not None else None),
              ctx.ev("txqueuelen", nic.tx_queue_len, "packets",
                     f"/sys/class/net/{nic.interface}/tx_queue_len")]
        q = nic.tx_queue_len
        enter = "" if nic.own or nic.pid is None else f"nsenter -t {nic.pid} -n "
        if q is not None:
            link = Action.command(f"{enter}ip link set dev {nic.interface} txqueuelen "
                                  f"{_toward(q, 2 * q if q else 1000)}",
                                  why="a longer queue absorbs bursts instead of dropping them; "
                                      "it adds latency when it fills (bufferbloat): prefer fq_codel")
        else:
            link = Action.command(f"{enter}ip link show dev {nic.interface}  # qlen: the "
                                  f"txqueuelen; then {enter}ip link set dev {nic.interface} "
                                  "txqueuelen <twice that>",
                                  why="a longer queue absorbs bursts instead of dropping them")
        acts = [link,
                Action.command(f"{enter}tc -s qdisc show dev {nic.interface}  # which qdisc "
                               "drops, and its backlog"),
                Action.command(f"{enter}ethtool -S {nic.interface} | grep -i drop  # drops in "
                               "the driver or the NIC rings")]
        out.append(r.finding(
            "critical" if peak >= r.t("critical_per_s") else "warning", ev,
            f"{nic.interface} {where(nic.netns, nic.own)} dropped packets it was asked to send "
            f"({peak:,.0f}/s at the peak): the transmit queue was full. TCP sees these as losses "
            "and slows down.",
            acts, subject=Subject(interface=nic.interface, netns=m.netns_label(nic.netns))))
    return out or None


def _cpus(ids: list[int]) -> str:
    return ",".join(str(i) for i in sorted(ids))


@rule("net.softnet-squeeze", title="Receive processing runs out of budget (softnet)",
      needs=("softnet_stat",), uses=("sysctl",),
      thresholds={
          "warn_drops_per_s": Threshold(1, "softnet drops/s on one CPU, in an interval",
                                        "the per-CPU backlog (netdev_max_backlog) was full: "
                                        "received packets were lost"),
          "warn_squeeze_per_s": Threshold(50, "time_squeeze/s on one CPU, in an interval",
                                          "NET_RX stopped with work left many times a second: "
                                          "receive processing lags the traffic"),
          "critical_drops_per_s": Threshold(100, "softnet drops/s on one CPU, in an interval",
                                            "a steady loss of received packets"),
      })
def softnet_squeeze(ctx: Context, r: Rule):
    """/proc/net/softnet_stat per CPU: 'dropped' (netif_rx found the backlog over
    netdev_max_backlog) and 'time_squeeze' (net_rx_action left with packets to do after
    netdev_budget packets or netdev_budget_usecs), judged per interval."""
    sn = m.softnet(ctx.series)
    if sn is None:
        raise ctx.cannot_look("softnet_stat not collected")
    drop = [c for c in sn.cpus if (c.dropped_peak_per_s or 0) >= r.t("warn_drops_per_s")]
    sq = [c for c in sn.cpus if (c.squeeze_peak_per_s or 0) >= r.t("warn_squeeze_per_s")]
    if not drop and not sq:
        return None
    ev = []
    for c in sorted(drop, key=lambda c: -c.dropped_peak_per_s)[:4]:
        ev.append(ctx.ev(f"cpu{c.cpu} dropped", c.dropped_peak_per_s, "/s", "/proc/net/softnet_stat",
                         threshold=r.t("warn_drops_per_s"),
                         note=f"{c.dropped} over the window, peak interval"))
    for c in sorted(sq, key=lambda c: -c.squeeze_peak_per_s)[:4]:
        ev.append(ctx.ev(f"cpu{c.cpu} time_squeeze", c.squeeze_peak_per_s, "/s",
                         "/proc/net/softnet_stat", threshold=r.t("warn_squeeze_per_s"),
                         note=f"{c.time_squeeze} over the window, peak interval"))
    for name, v in (("net.core.netdev_budget", sn.netdev_budget),
                    ("net.core.netdev_budget_usecs", sn.netdev_budget_usecs),
                    ("net.core.netdev_max_backlog", sn.netdev_max_backlog)):
        ev.append(ctx.ev(name, v, "", "/proc/sys/" + name.replace(".", "/")))
    acts = []
    if sq:
        if sn.netdev_budget is not None:
            acts.append(Action.sysctl("net.core.netdev_budget", sn.netdev_budget,
                                      _toward(sn.netdev_budget, 2 * sn.netdev_budget),
                                      why="more packets per NET_RX run before it yields; costs "
                                          "latency for other work on that CPU"))
        if sn.netdev_budget_usecs is not None:
            acts.append(Action.sysctl("net.core.netdev_budget_usecs", sn.netdev_budget_usecs,
                                      _toward(sn.netdev_budget_usecs, 2 * sn.netdev_budget_usecs),
                                      why="more time per NET_RX run"))
    if drop and sn.netdev_max_backlog is not None:
        acts.append(Action.sysctl("net.core.netdev_max_backlog", sn.netdev_max_backlog,
                                  _toward(sn.netdev_max_backlog, 2 * sn.netdev_max_backlog),
                                  why="a longer per-CPU input queue absorbs bursts"))
    acts.append(Action.command("grep . /sys/class/net/*/queues/rx-*/rps_cpus  # spread receive "
                               "work over more CPUs (RPS) if one CPU takes it all"))
    worst = max((c.dropped_peak_per_s or 0 for c in drop), default=0)
    ids = sorted({c.cpu for c in drop + sq})
    return r.finding(
        "critical" if worst >= r.t("critical_drops_per_s") else "warning", ev,
        ("Received packets were dropped because a CPU's backlog was full" if drop else
         "Receive processing (NET_RX softirq) repeatedly ran out of its budget with packets left")
        + f" on CPU {_cpus(ids)}. The CPU handling receive work cannot keep up with the traffic.",
        acts, subject=Subject(cpu=_cpus(ids)))
