import pytest

from ksight.errors import ParseError
from ksight.sources import sockstat
from tests.conftest import corpus_root, corpus_text


def test_procfs_expected():
    # procfs/EXPECTED.md: proc/net/sockstat sockets used 1602, TCP inuse 35
    s = sockstat.read(corpus_root("procfs"))
    assert s.sockets_used == 1602
    assert s.get("TCP", "inuse") == 35
    assert s.get("TCP", "mem") == 22  # pages
    assert s.get("FRAG", "memory") == 0


def test_node_exporter_e2e():
    # node_exporter e2e-output.txt: node_sockstat_sockets_used 229, TCP_inuse 4, TCP_alloc 17,
    # TCP_tw 4, TCP_mem 1 (TCP_mem_bytes 4096: mem is in pages), TCP6_inuse 17, RAW6_inuse 1
    root = corpus_root("node_exporter")
    s = sockstat.read(root)
    assert s.sockets_used == 229
    assert (s.get("TCP", "inuse"), s.get("TCP", "alloc"), s.get("TCP", "tw")) == (4, 17, 4)
    assert s.get("TCP", "orphan") == 0
    assert s.get("TCP", "mem") * 4096 == 4096
    s6 = sockstat.read6(root)
    assert s6.sockets_used is None
    assert s6.get("TCP6", "inuse") == 17
    assert s6.get("UDP6", "inuse") == 9
    assert s6.get("RAW6", "inuse") == 1


def test_pcp_files():
    # values as printed in pcp/files/proc_net_sockstat{,6}
    s = sockstat.parse(corpus_text("pcp", "files", "proc_net_sockstat"))
    assert s.sockets_used == 1866
    assert s.groups["TCP"] == {"inuse": 74, "orphan": 9, "tw": 0, "alloc": 86, "mem": 13}
    s6 = sockstat.parse6(corpus_text("pcp", "files", "proc_net_sockstat6"))
    assert s6.get("TCP6", "inuse") == 10


def test_absent_is_none():
    s = sockstat.parse("TCP: inuse 1\n")
    assert s.sockets_used is None
    assert s.get("TCP", "orphan") is None


@pytest.mark.parametrize("text", ["", "sockets: used\n", "TCP: inuse 35 orphan\n",
                                  "TCP: inuse x\n", "garbage\n", "TCP inuse 3\n"])
def test_bad_input(text):
    with pytest.raises(ParseError) as ei:
        sockstat.parse("sockets: used 3\n" + text if text else text)
    assert ei.value.path == "proc/net/sockstat"
