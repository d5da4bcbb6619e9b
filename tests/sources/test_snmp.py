import re

import pytest

from ksight.errors import ParseError
from ksight.sources import netstat, snmp
from tests.conftest import corpus_root, corpus_text

# PCP's metric names that are not the kernel's name lower-cased (pmdalinux aliases)
PCP_ALIASES = {"recvbuferrors": "rcvbuferrors"}


def pcp_sections(outfile: str, title: str) -> dict[str, dict[tuple[str, str], int | None]]:
    """pminfo -f output in pcp/expected/*.out -> {file: {(group, metric): value or None}}."""
    text = corpus_text("pcp", "expected", outfile)
    out = {}
    for sec in re.finditer(rf"== Checking {title} from (\S+)\n(.*?)== done", text, re.S):
        vals = {}
        for m in re.finditer(r"^network\.(\w+)\.(\w+)\n(.*?)\n\n", sec.group(2), re.S | re.M):
            g, n, body = m.groups()
            if "No value" in body:
                vals[(g, n)] = None
                continue
            v = re.fullmatch(r"\s+value (-?\d+)", body)
            if v:
                vals[(g, n)] = int(v.group(1))
        out[sec.group(1)] = vals
    return out


@pytest.mark.parametrize("name", ["procnet-snmp-2.6.32", "procnet-snmp-3.19.0",
                                  "procnet-snmp-5.14.0", "procnet-snmp-5.14.7"])
def test_pcp_872_every_metric(name):
    # pcp/expected/872.out: pmdalinux's values for network.{ip,icmp,tcp,udp,udplite}.* from
    # these files; "No value(s) available!" means the kernel did not print it (-> None here).
    want = pcp_sections("872.out", "inet network metrics")[name]
    s = snmp.parse(corpus_text("pcp", "files", name))
    low = {(g.lower(), k.lower()): v for g, d in s.groups.items() for k, v in d.items()}
    checked = 0
    for (g, n), v in want.items():
        got = low.get((g, PCP_ALIASES.get(n, n)))
        assert got == v, (g, n)
        checked += 1
    assert checked >= 65


def test_pcp_872_spot_values():
    s = snmp.parse(corpus_text("pcp", "files", "procnet-snmp-2.6.32"))
    assert s.get("Udp", "InDatagrams") == 76584  # 872.out network.udp.indatagrams
    assert s.get("Icmp", "InCsumErrors") is None  # 2.6.32 has no InCsumErrors (872.out: no value)
    s = snmp.parse(corpus_text("pcp", "files", "procnet-snmp-5.14.0"))
    assert s.get("Icmp", "InCsumErrors") == 3


def test_pcp_1805_tcp_from_snmp_and_netstat():
    # pcp/expected/1805.out "network.tcp": Tcp values from proc_net_snmp, TcpExt from proc_net_netstat
    s = snmp.parse(corpus_text("pcp", "files", "proc_net_snmp"))
    n = netstat.parse(corpus_text("pcp", "files", "proc_net_netstat"))
    assert s.get("Tcp", "MaxConn") == 4
    assert s.get("Tcp", "RetransSegs") == 12
    assert s.get("Tcp", "InCsumErrors") == 15
    assert n.get("TcpExt", "TW") == 11  # network.tcp.timewaited
    assert n.get("TcpExt", "PAWSEstab") == 15  # network.tcp.pawsestabrejected
    assert n.get("TcpExt", "ListenOverflows") == 19
    assert n.get("TcpExt", "ListenDrops") == 20
    assert n.get("TcpExt", "TCPTimeouts") == 40  # network.tcp.timeouts


def e2e(prefix: str) -> dict[str, float]:
    from tests.conftest import e2e_prefixed

    return e2e_prefixed(prefix)


def test_node_exporter_e2e_netstat():
    # node_exporter e2e-output.txt node_netstat_<Group>_<Field> from proc/net/{snmp,netstat}
    root = corpus_root("node_exporter")
    s, n = snmp.read(root), netstat.read(root)
    checked = 0
    for key, val in e2e("node_netstat_").items():
        group, _, name = key.partition("_")
        src = s if group in s.groups else n if group in n.groups else None
        if src is None:
            assert group in ("Ip6", "Icmp6", "Udp6", "UdpLite6")  # from snmp6, not ours
            continue
        assert src.get(group, name) == val, key
        checked += 1
    assert checked >= 25
    assert s.get("Tcp", "RetransSegs") == 227
    assert s.get("Tcp", "MaxConn") == -1  # signed


def test_procnet_capture_root():
    n = netstat.read(corpus_root("pcp", "unpacked", "procnet-4.15.14-root-001"))
    assert "TcpExt" in n.groups and "IpExt" in n.groups
    assert n.get("MPTcpExt", "MPCapableSYNRX") is None  # 4.15 predates MPTCP


GOOD = "Tcp: RtoAlgorithm MaxConn\nTcp: 1 -1\nUdp: InDatagrams\nUdp: 5\n"


def test_small_good():
    s = snmp.parse(GOOD)
    assert s.get("Tcp", "MaxConn") == -1
    assert s.get("Udp", "InDatagrams") == 5
    assert s.get("Udp", "Nope") is None and s.get("Nope", "x") is None


@pytest.mark.parametrize("text,lineno", [
    ("", None),
    ("Tcp: RtoAlgorithm MaxConn\nTcp: 1\n", 2),  # fewer values than names
    ("Tcp: RtoAlgorithm MaxConn\nTcp: 1 2 3\n", 2),  # more values
    ("Tcp: RtoAlgorithm MaxConn\nUdp: 1 2\n", 2),  # values of another group
    ("Tcp: RtoAlgorithm MaxConn\nTcp: 1 x\n", 2),  # not a number
    ("Tcp: RtoAlgorithm MaxConn\nTcp: 1 2\nUdp: InDatagrams NoPo", 3),  # truncated header
    ("Tcp: RtoAlgorithm MaxConn\nTcp: 1 2\nUdp: InDatagrams NoPorts\nUdp: 4", 4),  # cut mid-line
    ("garbage without colon\n", 1),
    ("\x00\x01binary: \x02\n", 1),
])
def test_bad_input(text, lineno):
    with pytest.raises(ParseError) as ei:
        snmp.parse(text)
    assert ei.value.lineno == lineno
    assert ei.value.path == "proc/net/snmp"
