"""tcp.buffer-config judged from the kernel's own measure: tcp_info sndbuf_limited / busy_time.

The machine text is PCP's bigsys capture (tests/diagnose/tcp_helpers.Machine); the sockets are
set by hand or decoded from a real sock_diag answer (tests/collect/test_sockdiag_limited.DUMP,
where `ss -ti` printed busy:884ms sndbuf_limited:580ms(65.6%)). Expected shares are computed
here by hand."""

from __future__ import annotations

import dataclasses

import pytest

from tests.diagnose.tcp_helpers import Machine, ev, found


def _sock(port, *, busy, snd, rwnd=0, rate=None, rtt_us=20_000, sndbuf=87_040, cookie=None):
    from ksight.collect.sockets import Sock

    return Sock("inet", "10.0.0.1", port, "10.0.0.2", 443, "ESTABLISHED", 0, 0, 0, 0, 0, 0,
                100 + port, pid=42, comm="uploader", cwnd=40, rtt_us=rtt_us,
                delivery_rate=rate, sndbuf=sndbuf, busy_time_us=busy, sndbuf_limited_us=snd,
                rwnd_limited_us=rwnd, cookie=cookie or 1000 + port)


def _run(tmp_path, per_snap):
    """One snapshot per list of sockets; the tcp area judged on them."""
    from ksight.collect.sockets import SocketTable
    from ksight.diagnose.engine import diagnose

    m = Machine(tmp_path)
    for _ in per_snap:
        m.snap()
    snaps = [dataclasses.replace(s, sockets=SocketTable(tuple(socks), True, None, ()))
             for s, socks in zip(m.snaps, per_snap)]
    return found(diagnose(snaps, ["tcp"]), "tcp.buffer-config")


def test_window_growth_decides_not_the_connections_life(tmp_path):
    """Over the window the flow was busy 2.0 s of which 1.4 s waiting for its send buffer (70 %),
    although over its life it was so only (50 + 1.4) / (400 + 2.0) = 12.8 % of the time."""
    before = _sock(1, busy=400_000_000, snd=50_000_000, rwnd=1_000_000)
    after = _sock(1, busy=402_000_000, snd=51_400_000, rwnd=1_100_000)
    (f,) = _run(tmp_path, [[before], [after]])
    e = ev(f, "sndbuf-limited 10.0.0.1:1 -> 10.0.0.2:443")
    assert e.value == pytest.approx(70.0) and e.unit == "%" and e.threshold == 50
    assert "1400 ms of busy 2000 ms over the window" in e.note
    assert "rwnd_limited 100 ms (5.0 %)" in e.note
    assert "pinned" in f.explanation  # 87,040 bytes < tcp_wmem max
    assert f.subject.socket == "10.0.0.1:1 -> 10.0.0.2:443" and f.subject.pid == 42


def test_kernel_measure_overrides_the_estimate(tmp_path):
    """The delivery rate says 'at its buffer's cap' (1.85 MB/s of 87,040 / 2 / 0.02 = 2.18 MB/s,
    85 %), but the kernel counted only 10 % of the busy time as send-buffer limited: quiet. And
    the reverse: a slow-looking flow the kernel held back 90 % of its busy time fires."""
    quiet = [[_sock(1, busy=1_000_000, snd=100_000, rate=1_850_000)],
             [_sock(1, busy=3_000_000, snd=300_000, rate=1_850_000)]]
    assert not _run(tmp_path / "q", quiet)
    loud = [[_sock(2, busy=1_000_000, snd=900_000, rate=200_000)],
            [_sock(2, busy=2_000_000, snd=1_800_000, rate=200_000)]]
    (f,) = _run(tmp_path / "l", loud)
    assert ev(f, "sndbuf-limited 10.0.0.1:2 -> 10.0.0.2:443").value == pytest.approx(90.0)


def test_short_busy_time_is_not_judged(tmp_path):
    """150 ms busy over the window (< 200 ms), all of it limited: too short to judge."""
    socks = [[_sock(1, busy=0, snd=0)], [_sock(1, busy=150_000, snd=150_000)]]
    assert not _run(tmp_path, socks)


def test_a_socket_seen_once_is_judged_over_its_life(tmp_path):
    """A connection that appeared in the last snapshot only: its life's counters (60 %)."""
    socks = [[], [_sock(3, busy=5_000_000, snd=3_000_000)]]
    (f,) = _run(tmp_path, socks)
    e = ev(f, "sndbuf-limited 10.0.0.1:3 -> 10.0.0.2:443")
    assert e.value == pytest.approx(60.0) and "over the connection's life" in e.note


def test_real_tcp_info_bytes(tmp_path):
    """The flow of a real dump (ss: busy:884ms sndbuf_limited:580ms(65.6%)), one snapshot."""
    from ksight.collect import sockdiag
    from ksight.collect.sockets import Sock
    from tests.collect.test_sockdiag_limited import DUMP

    socks = [Sock(**r) for r in sockdiag.table_rows(DUMP, "little", 7)]
    (f,) = _run(tmp_path, [socks])
    e = ev(f, "sndbuf-limited 198.18.0.1:47846 -> 198.18.0.2:7000")
    assert f"{e.value:.1f}" == "65.6"
    assert "580 ms of busy 884 ms" in e.note and "sndbuf 32768 bytes" in e.note


def test_fallback_says_it_is_an_estimate(tmp_path):
    """Without the fields (a kernel before 4.10): the estimate, and the evidence says so."""
    old = _sock(1, busy=None, snd=None, rwnd=None, rate=1_850_000)
    (f,) = _run(tmp_path, [[old], [old]])
    e = ev(f, "flow 10.0.0.1:1 -> 10.0.0.2:443")
    assert e.value == 1_850_000 and e.threshold == round(87_040 / 2 / 0.02)
    assert "estimated" in e.note and "before 4.10" in e.note
