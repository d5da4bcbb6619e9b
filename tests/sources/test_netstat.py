import re

import pytest

from ksight.errors import ParseError, Unavailable
from ksight.fs import DirRoot
from ksight.sources import netstat
from tests.conftest import corpus_root, corpus_text


def test_procfs_expected():
    # procfs/EXPECTED.md: proc/26231/net/netstat TcpExt TW 83, PAWSEstab 3640
    n = netstat.parse(corpus_text("procfs", "proc", "26231", "net", "netstat"))
    assert n.get("TcpExt", "TW") == 83
    assert n.get("TcpExt", "PAWSEstab") == 3640


def test_pcp_1805_mptcp_every_metric():
    # pcp/expected/1805.out "network.mptcp": MPTcpExt from pcp/files/proc_net_netstat; PCP's
    # names are the kernel's lower-cased (the file deliberately repeats some values)
    text = corpus_text("pcp", "expected", "1805.out")
    body = text.split("== Checking network.mptcp metrics", 1)[1].split("== Checking", 1)[0]
    want = {m.group(1): int(m.group(2))
            for m in re.finditer(r"^network\.mptcp\.(\w+)\n\s+value (\d+)$", body, re.M)}
    n = netstat.parse(corpus_text("pcp", "files", "proc_net_netstat"))
    low = {k.lower(): v for k, v in n.groups["MPTcpExt"].items()}
    assert len(want) >= 40
    for name, v in want.items():
        assert low[name] == v, name


def test_node_exporter_e2e_tcpext():
    # node_exporter e2e-output.txt
    n = netstat.read(corpus_root("node_exporter"))
    assert n.get("TcpExt", "TCPRcvQDrop") == 131
    assert n.get("TcpExt", "SyncookiesFailed") == 2
    assert n.get("TcpExt", "TCPTimeouts") == 115
    assert n.get("IpExt", "InOctets") == 6286396970


def _raw(group: str, name: str) -> int | None:
    """One counter of /proc/net/netstat read by hand: a header line of names, then the values."""
    lines = open("/proc/net/netstat").read().splitlines()
    for head, vals in zip(lines[::2], lines[1::2]):
        names, values = head.split(), vals.split()
        if names[0] == group + ":" and name in names:
            return int(values[names.index(name)])
    return None


def test_live_tcpext_against_the_file():
    # counters only grow: the parsed value lies between two hand readings around it
    for group, name in [("TcpExt", "ListenOverflows"), ("TcpExt", "TCPTimeouts"), ("IpExt", "InOctets")]:
        before = _raw(group, name)
        got = netstat.read(DirRoot("/", live=True)).get(group, name)
        after = _raw(group, name)
        if before is None:  # not on this kernel: absent, not 0
            assert got is None and after is None, name
        else:
            assert before <= got <= after, (name, before, got, after)
    assert _raw("TcpExt", "ListenOverflows") is not None  # every kernel since 2.6 has it


def test_missing_file_is_unavailable(tmp_path):
    with pytest.raises(Unavailable):
        netstat.read(DirRoot(str(tmp_path)))


@pytest.mark.parametrize("text", ["", "TcpExt: TW PAWSEstab\n", "TcpExt: TW PAWSEstab\nTcpExt: 1\n",
                                  "TcpExt: TW\nIpExt: 3\n"])
def test_bad_input(text):
    with pytest.raises(ParseError) as ei:
        netstat.parse(text)
    assert ei.value.path == "proc/net/netstat"
