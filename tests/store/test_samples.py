"""store/samples.py: typed, versioned samples.

The checked-in sample tests/fixtures/samples/v1-vm-6.18-snap1-top50.ksample was written by the
v1 codec from snapshot 0001 of tests/fixtures/captures/vm-6.18.tar.zst (every system source, the
50 largest processes by RSS). It must keep decoding in every later ksight: its numbers are checked
against the capture's raw kernel text, read here with plain string handling, not the parsers.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tarfile
import typing
from pathlib import Path

import msgspec
import pytest
import zstandard

from ksight.errors import KsightError, SampleError
from ksight.sources import SYSTEM
from ksight.store import samples

HERE = Path(__file__).resolve().parents[1]
SAMPLE = HERE / "fixtures" / "samples" / "v1-vm-6.18-snap1-top50.ksample"  # dictionary 1
# the same snapshot (decoded from SAMPLE) re-encoded with built-in dictionary 2
SAMPLE_DICT2 = HERE / "fixtures" / "samples" / "v1-vm-6.18-snap1-top50-dict2.ksample"
CAPTURE = HERE / "fixtures" / "captures" / "vm-6.18.tar.zst"


@pytest.fixture(scope="module")
def raw():
    """Raw text of capture snapshot 0001, by path."""
    data = zstandard.ZstdDecompressor().stream_reader(CAPTURE.open("rb")).read()
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        for m in tf.getmembers():
            if m.isfile() and m.name.startswith("0001/"):
                out[m.name[5:]] = tf.extractfile(m).read().decode()
    return out


@pytest.fixture(scope="module")
def snap():
    return samples.decode(SAMPLE.read_bytes())


def _kv(text: str, key: str) -> int:
    for line in text.splitlines():
        k, _, v = line.partition(":") if ":" in line else line.partition(" ")
        if k.strip() == key:
            return int(v.split()[0])
    raise AssertionError(f"{key} not in text")


def test_checked_in_v1_sample_holds_the_capture_numbers(snap, raw):
    m = snap.get("meminfo")
    assert m.mem_total_kb == _kv(raw["proc/meminfo"], "MemTotal")
    assert m.dirty_kb == _kv(raw["proc/meminfo"], "Dirty")
    assert m.fields["Committed_AS"] == _kv(raw["proc/meminfo"], "Committed_AS")
    v = snap.get("vmstat").counters
    for name in ("pgfault", "pgpgin", "nr_free_pages", "nr_dirty"):
        assert v[name] == _kv(raw["proc/vmstat"], name), name
    assert snap.uptime_s == float(raw["proc/uptime"].split()[0])
    cpu = raw["proc/stat"].splitlines()[0].split()
    assert snap.get("stat").cpu_total.user_ticks == int(cpu[1])
    assert snap.get("stat").cpu_total.idle_ticks == int(cpu[4])
    la = raw["proc/loadavg"].split()
    assert snap.get("loadavg").load1 == float(la[0]) and snap.get("loadavg").last_pid == int(la[4])
    for line in raw["proc/slabinfo"].splitlines()[2:5]:
        f = line.split()
        assert snap.get("slabinfo").caches[f[0]].active_objs == int(f[1])
    # the process table: the 50 of 78 with the most resident pages (statm field 2)
    pids = sorted((int(p.split("/")[1]) for p in raw if p.count("/") == 2 and p.endswith("/statm")))
    assert len(pids) == 78
    assert len(snap.processes) == 50
    rss = {pid: int(raw[f"proc/{pid}/statm"].split()[1]) for pid in pids}
    assert min(rss[p] for p in snap.processes) >= sorted(rss.values())[-50]
    for pid, p in snap.processes.items():
        after = raw[f"proc/{pid}/stat"].rpartition(")")[2].split()
        assert p.stat.utime_ticks == int(after[11]) and p.stat.ppid == int(after[1])
        assert p.statm.resident_pages == rss[pid]
        status = raw[f"proc/{pid}/status"]
        if "\nVmRSS:" in status:
            assert p.status.vm_rss_kb == _kv(status, "VmRSS")
        else:  # a kernel thread: no VmRSS line, absent is None
            assert p.status.vm_rss_kb is None and p.kernel_thread
        assert p.comm == raw[f"proc/{pid}/stat"].partition("(")[2].rpartition(")")[0]
    assert any(m.source == "processes:sample" and "50 of 78" in m.reason for m in snap.unavailable)


def test_decoded_sources_are_the_parsers_dataclasses(snap):
    from ksight.collect.processes import Process

    # an older sample: the sources it holds are the parsers' dataclasses; sources ksight reads
    # since (lru_gen) are simply absent, which is how a newer ksight reads an older sample
    assert set(snap.sources) <= set(SYSTEM) and len(snap.sources) >= 20
    assert "meminfo" in snap.sources and "vmstat" in snap.sources
    for name, value in snap.sources.items():
        want = typing.get_type_hints(SYSTEM[name].load())["return"]
        assert type(value) is want, name
    p = next(iter(snap.processes.values()))
    assert type(p) is Process and p.res_kb == p.statm.resident_pages * 4
    assert snap.host.kernel.startswith("6.18") and snap.host.page_size == 4096


def test_live_round_trip_equals_the_snapshot():
    from ksight.collect.snapshot import take
    from ksight.fs import LiveRoot

    s = take(LiveRoot(), processes=True)
    back = samples.decode(samples.encode(s))
    assert back.sources == s.sources
    assert back.processes == s.processes  # PidStatus.text is not stored and not compared
    assert back.host == s.host and back.taken_at == s.taken_at and back.uptime_s == s.uptime_s
    assert back.unavailable == s.unavailable


def _payload():
    from ksight.store import samples_v1

    return msgspec.msgpack.decode(samples_v1.unframe(SAMPLE.read_bytes(), None))


def _reframe(p) -> bytes:
    """A v1 keyframe (dictionary 1) of payload map p, as ksight wrote them before layout v2."""
    import zlib

    from ksight.store import samples_v1

    payload = msgspec.msgpack.encode(p)
    body = zstandard.ZstdCompressor(level=3, dict_data=samples_v1.builtin_dict(1), write_checksum=True,
                                    write_content_size=True, write_dict_id=False).compress(payload)
    return samples_v1.HEADER.pack(b"KSMP", 1, 0, 1, 0, zlib.crc32(payload)) + body


def _drop_field(p, tag, field, source):
    names = p["schema"][tag]
    i = names.index(field)
    p["schema"][tag] = names[:i] + names[i + 1:]
    vals = p["sources"][source]
    p["sources"][source] = vals[:i] + vals[i + 1:]


def test_an_older_sample_without_a_field_decodes(raw):
    p = _payload()
    _drop_field(p, "Meminfo", "hugetlb_kb", "meminfo")  # has a default (None)
    _drop_field(p, "Loadavg", "last_pid", "loadavg")  # no default, optional: None
    s = samples.decode(_reframe(p))
    assert s.get("meminfo").hugetlb_kb is None and s.get("loadavg").last_pid is None
    assert s.get("meminfo").mem_total_kb == _kv(raw["proc/meminfo"], "MemTotal")
    assert s.get("loadavg").load5 == float(raw["proc/loadavg"].split()[1])


def test_a_newer_sample_with_unknown_fields_and_sources_decodes(raw):
    p = _payload()
    p["schema"]["Meminfo"].append("future_kb")
    p["sources"]["meminfo"].append(123)
    p["sources"]["future_source"] = [1, 2, 3]
    p["future_key"] = {"x": 1}
    s = samples.decode(_reframe(p))
    assert not hasattr(s.get("meminfo"), "future_kb") and "future_source" not in s.sources
    assert s.get("meminfo").mem_free_kb == _kv(raw["proc/meminfo"], "MemFree")


def test_a_missing_required_field_is_a_sample_error():
    p = _payload()
    _drop_field(p, "Uptime", "uptime_s", "uptime")
    with pytest.raises(SampleError, match="Uptime: the sample lacks required field"):
        samples.decode(_reframe(p))


def test_a_wrong_type_is_a_sample_error():
    p = _payload()
    p["sources"]["meminfo"][0] = "lots"
    with pytest.raises(SampleError, match="source meminfo"):
        samples.decode(_reframe(p))


@pytest.mark.parametrize("cut", [0, 3, 15, 16, 17, 100, -40, -1])
def test_truncated_samples_are_sample_errors(cut):
    data = SAMPLE.read_bytes()
    with pytest.raises(SampleError):
        samples.decode(data[:cut])


def test_garbled_samples_are_sample_errors():
    data = bytearray(SAMPLE.read_bytes())
    for pos in (20, len(data) // 2, len(data) - 5):
        bad = bytearray(data)
        bad[pos] ^= 0xFF
        with pytest.raises(SampleError):
            samples.decode(bytes(bad))
    with pytest.raises(SampleError, match="not a ksight sample"):
        samples.decode(b"PK\x03\x04" + bytes(data[4:]))
    assert issubclass(SampleError, KsightError)


def test_a_newer_format_version_is_refused_clearly():
    data = bytearray(SAMPLE.read_bytes())
    data[4] = samples.VERSION + 1
    with pytest.raises(SampleError, match=rf"version {samples.VERSION + 1} is newer than this ksight "
                                           rf"reads \(<= {samples.VERSION}\)"):
        samples.decode(bytes(data))
    data[4] = 1  # a v1 keyframe naming a dictionary this ksight never had
    data[6:8] = (99).to_bytes(2, "big")
    with pytest.raises(SampleError, match="dictionary 99 is not one this ksight has"):
        samples.decode(bytes(data))


def test_delta_series_decodes_in_order_and_refuses_a_wrong_base():
    from ksight.store.capture import open_capture

    snaps = list(open_capture(str(CAPTURE)).snapshots(processes=True))
    enc = samples.SampleEncoder(keyframe_every=3)
    frames = [enc.encode(s) for s in snaps + snaps]
    assert [samples.is_keyframe(f) for f in frames] == [True, False, False, True]
    dec = samples.SampleDecoder()
    for s, f in zip(snaps + snaps, frames):
        back = dec.decode(f)
        assert back.sources == s.sources and back.processes == s.processes
    with pytest.raises(SampleError, match="decodes only after the sample before it"):
        samples.decode(frames[1])
    dec = samples.SampleDecoder()
    dec.decode(frames[0])
    with pytest.raises(SampleError, match="out of order"):
        dec.decode(frames[2])


def test_builtin_dictionary_1_is_frozen():
    from ksight.store import samples_dict

    # written when dictionary 1 was made: if this fails, dictionary 1 was edited; add 2 instead
    want = "0cc3810238880ba37a29779359def57cff40876cb73ee07f3c92d662e767b862"
    assert hashlib.sha256(samples_dict.dictionary(1)).hexdigest() == want
    assert samples_dict.SHA256[1] == want


def test_check_startup_does_not_import_msgspec():
    code = "import sys, ksight.cli.main, ksight.collect.snapshot; print('msgspec' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_builtin_dictionary_2_is_frozen_and_v2_writes_no_dictionary():
    from ksight.store import samples_dict, samples_dict2

    # written when dictionary 2 was made: never edit it. Only v1 samples need it now
    want = "3fb31ec14a442fd0ad6ea535f64d7d50d24d61e52461f82bc14f71e9567c54e5"
    d2 = samples_dict.dictionary(2)
    assert hashlib.sha256(d2).hexdigest() == want == samples_dict.SHA256[2] == samples_dict2.SHA256
    assert d2.startswith(samples_dict.dictionary(1))  # 1's bytes, then one live payload
    assert samples_dict.NUMBERS == (1, 2) and samples_dict.dictionary(3) is None
    s = samples.decode(SAMPLE.read_bytes())
    assert int.from_bytes(SAMPLE.read_bytes()[6:8], "big") == 1  # the v1 sample: dictionary 1
    data = samples.encode(s)
    assert data[4] == 3  # layout v3: bytes 6-7 name the schema, whose zstd dictionary it uses
    assert zstandard.get_frame_parameters(data[16:]).dict_id == 0  # named by the schema, not by zstd
    assert samples.decode(data) == s


def test_checked_in_dictionary_2_sample_decodes_to_the_same_values(snap):
    data = SAMPLE_DICT2.read_bytes()
    assert data[4] == 1 and int.from_bytes(data[6:8], "big") == 2  # format 1, dictionary 2
    s = samples.decode(data)
    assert s == snap  # the same values as the dictionary-1 sample, checked against the raw text
    assert s.get("meminfo").mem_total_kb == snap.get("meminfo").mem_total_kb and len(s.processes) == 50
