"""Two network namespaces joined by a veth pair, for network faults (live only, needs root).

    with NetnsPair(loss_pct=30) as n:
        n.run(n.a, ["python3", "-c", "..."], timeout=5)

Namespaces `ksl<ourpid>a` and `ksl<ourpid>b`; the veth ends are `ksla` (in a, 198.18.0.1/30)
and `kslb` (in b, 198.18.0.2/30). 198.18.0.0/15 is the RFC 2544 benchmarking range: it is
used only inside these namespaces and never reaches the host's network.

Loss: this kernel has no sch_netem, so loss is made with nftables: in each namespace a
`netdev` table `ksight_lab` whose ingress hook on the veth end drops
`numgen random mod 10000 < loss_pct*100` of the IP packets (ARP passes, so neighbours resolve).
Dropping at ingress, not in an output chain, is on purpose: a packet dropped by an output hook
makes the sender's sendto() fail with EPERM, which a lossy wire never does. So `loss_pct` is
the per-packet loss in EACH direction (like netem on both ends); a request/response pair is
lost with probability 1-(1-p)^2. Delay needs sch_netem: when tc
netem is missing, asking for delay_ms raises Unavailable (no fake delay).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess

from ..errors import Unavailable
from .. import pids

PREFIX = "ksl"
_STALE = re.compile(r"^ksl(\d+)[ab]$")
ADDR_A = "198.18.0.1"
ADDR_B = "198.18.0.2"
NETNS_DIR = "/run/netns"


def _ip(*args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, input=input)
    if check and r.returncode != 0:
        raise Unavailable("ip " + " ".join(args), (r.stderr or r.stdout).strip() or f"exit {r.returncode}")
    return r


def list_namespaces() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_DIR))
    except OSError:
        return []


def nft_rules(loss_pct: float, dev: str) -> str:
    """An nftables table dropping loss_pct % of the IP packets arriving on `dev` (ARP passes)."""
    n = int(round(loss_pct * 100))
    return (
        "table netdev ksight_lab {\n"
        "  chain ingress {\n"
        f"    type filter hook ingress device \"{dev}\" priority 0; policy accept;\n"
        f"    meta protocol {{ ip, ip6 }} numgen random mod 10000 < {n} counter drop\n"
        "  }\n"
        "}\n"
    )


class NetnsPair:
    def __init__(self, *, loss_pct: float = 0, delay_ms: int = 0):
        if not 0 <= loss_pct <= 100:
            raise ValueError("loss_pct must be within 0..100")
        if shutil.which("ip") is None:
            raise Unavailable("netns", "the `ip` command is missing (install iproute2)")
        pid = os.getpid()
        self.a = f"{PREFIX}{pid}a"
        self.b = f"{PREFIX}{pid}b"
        self.dev_a, self.dev_b = "ksla", "kslb"
        self.addr_a, self.addr_b = ADDR_A, ADDR_B
        self.loss_pct = loss_pct
        self.delay_ms = delay_ms
        self._procs: list[subprocess.Popen] = []
        self._closed = False
        self._created: list[str] = []
        self._eids: list[int] = []
        try:
            self._setup()
        except BaseException:
            self.close()
            raise

    def _setup(self) -> None:
        for ns in (self.a, self.b):
            self._eids.append(pids.register("lab", ident="lab:netns:" + ns))
            _ip("netns", "add", ns)
            self._created.append(ns)
        _ip("-n", self.a, "link", "add", self.dev_a, "type", "veth", "peer", "name", self.dev_b,
            "netns", self.b)
        _ip("-n", self.a, "addr", "add", f"{self.addr_a}/30", "dev", self.dev_a)
        _ip("-n", self.b, "addr", "add", f"{self.addr_b}/30", "dev", self.dev_b)
        for ns, dev in ((self.a, self.dev_a), (self.b, self.dev_b)):
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "set", dev, "up")
        if self.loss_pct > 0:
            if shutil.which("nft") is None:
                raise Unavailable("netns loss", "the `nft` command is missing (apt-get install nftables)")
            for ns, dev in ((self.a, self.dev_a), (self.b, self.dev_b)):
                r = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"],
                                   input=nft_rules(self.loss_pct, dev),
                                   capture_output=True, text=True, timeout=10)
                if r.returncode != 0:
                    raise Unavailable("netns loss", f"nft failed: {r.stderr.strip()}")
        if self.delay_ms > 0:
            r = subprocess.run(["tc", "-n", self.b, "qdisc", "add", "dev", self.dev_b, "root", "netem",
                                "delay", f"{int(self.delay_ms)}ms"], capture_output=True, text=True, timeout=10)
            if r.returncode != 0:
                raise Unavailable("netns delay", "tc netem failed (kernel without sch_netem?): "
                                  + r.stderr.strip())

    def popen(self, ns: str, argv, **kw) -> subprocess.Popen:
        if ns not in (self.a, self.b):
            raise ValueError(f"{ns!r} is not one of this pair's namespaces")
        p = subprocess.Popen(["ip", "netns", "exec", ns, *argv], **kw)
        self._procs.append(p)
        return p

    def run(self, ns: str, argv, timeout: float, **kw) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        if ns not in (self.a, self.b):
            raise ValueError(f"{ns!r} is not one of this pair's namespaces")
        return subprocess.run(["ip", "netns", "exec", ns, *argv], timeout=timeout, **kw)

    def dropped_packets(self) -> dict[str, int]:
        """Packets the loss rules dropped so far, per namespace (nft's own counters)."""
        out = {}
        for ns in (self.a, self.b):
            r = self.run(ns, ["nft", "list", "table", "netdev", "ksight_lab"], timeout=5)
            m = re.search(r"counter packets (\d+)", r.stdout)
            out[ns] = int(m.group(1)) if m else 0
        return out

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for p in self._procs:
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for p in self._procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        for ns in reversed(self._created):
            # deleting a namespace destroys the veth pair and the nft table inside it
            _ip("netns", "del", ns, check=False)
        if not any(ns in list_namespaces() for ns in self._created):
            for eid in self._eids:
                pids.unregister(eid)

    def __enter__(self) -> "NetnsPair":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def cleanup_stale(live=None) -> list[str]:
    """Delete ksl<pid>a/b namespaces whose creator is proven dead. Returns the names removed."""
    live = live or pids.Liveness.now()
    removed = []
    for ns in list_namespaces():
        m = _STALE.match(ns)
        if m and live.gone(int(m.group(1)), "lab:netns:" + ns):
            if _ip("netns", "del", ns, check=False).returncode == 0:
                removed.append(ns)
    return removed


__all__ = ["NetnsPair", "cleanup_stale", "list_namespaces", "nft_rules", "ADDR_A", "ADDR_B"]
