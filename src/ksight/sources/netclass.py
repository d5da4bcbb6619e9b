"""/sys/class/net/*: per-interface settings and statistics.

Each entry of sys/class/net is a link into sys/devices (or, for bonding, a plain directory); we
read through the root, which follows links that stay inside it (captures keep links). Read per
interface: tx_queue_len, mtu, operstate, speed (Mb/s), carrier, and, on request only,
statistics/*.

statistics/* is opt-in (`read(root, statistics=True)`, `read_stats(root)`, or the module option
STATISTICS = True): its ~25 files per interface repeat what /proc/net/dev already gives in one
read (bytes, packets, errs, drop, fifo, frame, compressed, multicast, colls, carrier), and
they were a third of a full snapshot's reads. The few it adds (rx_crc_errors, tx_aborted_errors,
rx_missed_errors, ...) are for when a diagnosis asks for them. Without it, `statistics` is {}.

speed reads -1 (or fails with EINVAL) when the link is down or the driver does not know it; carrier
fails with EINVAL when the interface is down: both are None then, never 0. Entries that are not
interfaces (bonding_masters) are skipped, and so is an interface removed while we read it.
"""

from __future__ import annotations

import posixpath
from dataclasses import field
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..errors import Unavailable
from ..fs import Root
from ._text import to_int

DIR = "sys/class/net"
PATH = DIR
STATISTICS = False  # read statistics/* by default? (see the module doc)


@dataclass(frozen=True)
class NetIface:
    name: str
    tx_queue_len: int | None
    mtu: int | None
    operstate: str | None  # up, down, unknown, dormant, lowerlayerdown, notpresent, testing
    speed_mbps: int | None
    carrier: int | None
    statistics: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class NetClass:
    interfaces: dict[str, NetIface]


def parse_int(text: str, path: str) -> int | None:
    """An integer sysfs attribute; an empty file is None (attribute not set).

    Unsigned, but for speed, which the kernel prints with %d (-1: unknown, link down)."""
    t = text.strip()
    if not t:
        return None
    return to_int(t, path, 1, t, signed=path.endswith("/speed"))


def _text(root: Root, path: str) -> str | None:
    try:
        return root.read_text(path)
    except Unavailable:
        return None  # missing on this kernel, EINVAL (link down), or removed meanwhile


def _int(root: Root, path: str) -> int | None:
    t = _text(root, path)
    return None if t is None else parse_int(t, path)


def _iface_dir(root: Root, name: str) -> str | None:
    base = f"{DIR}/{name}"
    if root.isdir(base):
        return base
    # Some corpora store a link flattened into a file holding its target ("../../devices/...").
    t = _text(root, base)
    if t is not None and t.strip().startswith("../") and "\n" not in t.strip():
        target = posixpath.normpath(posixpath.join(DIR, t.strip()))
        if not target.startswith("..") and root.isdir(target):
            return target
    return None


def read_iface(root: Root, name: str, statistics: bool = True) -> NetIface | None:
    base = _iface_dir(root, name)
    if base is None or not (root.exists(f"{base}/mtu") or root.exists(f"{base}/operstate")):
        return None  # bonding_masters and the like
    speed = _int(root, f"{base}/speed")
    if speed is not None and speed < 0:
        speed = None  # SPEED_UNKNOWN (-1)
    op = _text(root, f"{base}/operstate")
    stats: dict[str, int] = {}
    try:
        names = root.listdir(f"{base}/statistics") if statistics else []
    except Unavailable:
        names = []
    for n in names:
        v = _int(root, f"{base}/statistics/{n}")
        if v is not None:
            stats[n] = v
    return NetIface(
        name=name,
        tx_queue_len=_int(root, f"{base}/tx_queue_len"),
        mtu=_int(root, f"{base}/mtu"),
        operstate=(op.strip() or None) if op is not None else None,
        speed_mbps=speed,
        carrier=_int(root, f"{base}/carrier"),
        statistics=stats,
    )


def read(root: Root, statistics: bool | None = None) -> NetClass:
    """Every interface; statistics/* only when asked (None: the module option STATISTICS)."""
    if statistics is None:
        statistics = STATISTICS
    out: dict[str, NetIface] = {}
    for name in root.listdir(DIR):
        iface = read_iface(root, name, statistics)
        if iface is not None:
            out[name] = iface
    return NetClass(out)


def read_stats(root: Root) -> NetClass:
    """read() with statistics/* of every interface (the opt-in source)."""
    return read(root, statistics=True)
