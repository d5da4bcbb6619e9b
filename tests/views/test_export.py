"""`ksight export` (views/export.py, cli/export.py): the exported values are the kernel's, checked
against the capture's raw text read here straight out of the tar (not through ksight's parsers),
and Parquet read back with pyarrow holds the same rows as the CSV."""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
import json
import os
import re
import sys
import tarfile

import pytest

from ksight.cli.main import main
from ksight.views import export as ex
from tests.browser.synth import T0, snap
from tests.conftest import FIXTURES

CAP = str(FIXTURES / "captures" / "vm-6.18.tar.zst")


@functools.lru_cache(maxsize=1)
def _tar() -> bytes:
    import zstandard

    with open(CAP, "rb") as f:
        return zstandard.ZstdDecompressor().stream_reader(f).read()


@functools.lru_cache(maxsize=None)
def _raw(name: str) -> str:
    with tarfile.open(fileobj=io.BytesIO(_tar())) as t:
        return t.extractfile(name).read().decode()


def _manifest_times() -> list[float]:
    m = json.loads(_raw("manifest.json"))
    return [s["taken_at"] for s in m["snapshots"]]


def read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def csv_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("csv")
    assert main(["export", "--from", CAP, "--format", "csv", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def pq_dir(tmp_path_factory):
    pytest.importorskip("pyarrow")
    out = tmp_path_factory.mktemp("pq")
    assert main(["export", "--from", CAP, "--format", "parquet", "--out", str(out)]) == 0
    return out


def test_system_table_is_the_raw_kernel_text(csv_dir):
    rows = read_csv(csv_dir / "system.csv")
    assert len(rows) == 2
    times = _manifest_times()
    for k, row in enumerate(rows):
        assert float(row["unix_time"]) == pytest.approx(times[k], abs=1e-6)
        assert row["time"] == dt.datetime.fromtimestamp(times[k], dt.timezone.utc).isoformat(
            timespec="microseconds").replace("+00:00", "Z")
        mi = _raw(f"000{k}/proc/meminfo")
        for key, col in (("AnonPages", "meminfo_anon_pages_kb"), ("MemTotal", "meminfo_mem_total_kb"),
                         ("Dirty", "meminfo_dirty_kb"), ("Active(file)", "meminfo_active_file_kb")):
            want = re.search(rf"^{re.escape(key)}:\s+(\d+) kB$", mi, re.M).group(1)
            assert row[col] == want, (key, col)
        vm = dict(ln.split() for ln in _raw(f"000{k}/proc/vmstat").splitlines())
        for key in ("pgpgin", "pgpgout", "pgscan_kswapd", "nr_free_pages", "workingset_refault_file"):
            assert row[f"vmstat_{key}"] == vm[key], key
        # /proc/net/snmp: header and value lines in pairs
        snmp = _raw(f"000{k}/proc/net/snmp").splitlines()
        tcp = [ln.split()[1:] for ln in snmp if ln.startswith("Tcp:")]
        tcpd = dict(zip(*tcp))
        assert row["snmp_Tcp_OutSegs"] == tcpd["OutSegs"]
        assert row["snmp_Tcp_RetransSegs"] == tcpd["RetransSegs"]
        st = _raw(f"000{k}/proc/stat")
        ctxt = re.search(r"^ctxt (\d+)$", st, re.M).group(1)
        assert row["stat_ctxt_total"] == ctxt
        cpu = re.search(r"^cpu\s+(.*)$", st, re.M).group(1).split()
        assert row["stat_cpu_user_ticks"] == cpu[0] and row["stat_cpu_idle_ticks"] == cpu[3]
        la = _raw(f"000{k}/proc/loadavg").split()
        assert float(row["loadavg_load1"]) == float(la[0])


def test_cpu_rows_are_the_per_cpu_lines(csv_dir):
    rows = read_csv(csv_dir / "cpus.csv")
    for k in (0, 1):
        st = _raw(f"000{k}/proc/stat")
        lines = {int(m.group(1)): m.group(2).split()
                 for m in re.finditer(r"^cpu(\d+) (.*)$", st, re.M)}
        mine = [r for r in rows if float(r["unix_time"]) == pytest.approx(_manifest_times()[k], abs=1e-3)]
        assert sorted(int(r["cpu"]) for r in mine) == sorted(lines)
        for r in mine:
            raw = lines[int(r["cpu"])]
            assert [r["user_ticks"], r["nice_ticks"], r["system_ticks"], r["idle_ticks"],
                    r["iowait_ticks"], r["steal_ticks"]] == [raw[0], raw[1], raw[2], raw[3], raw[4], raw[7]]


def test_process_rows_keyed_by_pid_and_start_time(csv_dir):
    rows = read_csv(csv_dir / "processes.csv")
    last = [r for r in rows if float(r["unix_time"]) == pytest.approx(_manifest_times()[1], abs=1e-3)]
    assert len(last) > 10
    for r in last[:15]:
        pid = r["pid"]
        stat = _raw(f"0001/proc/{pid}/stat")
        after = stat[stat.rindex(")") + 2:].split()  # fields from 3 (state) on
        assert r["state"] == after[0] and r["ppid"] == after[1]
        assert r["start_ticks"] == after[19]  # field 22: starttime
        assert r["utime_ticks"] == after[11] and r["stime_ticks"] == after[12]
        assert r["comm"] == stat[stat.index("(") + 1:stat.rindex(")")]
        status = _raw(f"0001/proc/{pid}/status")
        m = re.search(r"^VmRSS:\s+(\d+) kB$", status, re.M)
        if m:  # a process with an address space: RSS as status says (statm is not captured)
            assert r["rss_kb"] == m.group(1)
    keys = {(r["boot_id"], r["pid"], r["start_ticks"], r["unix_time"]) for r in rows}
    assert len(keys) == len(rows)  # one row per process per snapshot


def test_parquet_holds_the_same_rows_as_csv(csv_dir, pq_dir):
    import pyarrow.parquet as pq

    for table in ex.TABLES:
        c = read_csv(csv_dir / f"{table}.csv")
        t = pq.read_table(pq_dir / f"{table}.parquet")
        assert t.num_rows == len(c), table
        assert t.column_names == list(c[0].keys()), table
        assert t.schema.field("time").type.tz == "UTC"
        for prow, crow in zip(t.to_pylist(), c):
            for k, v in prow.items():
                want = crow[k]
                if v is None:
                    assert want == "", (table, k)
                elif isinstance(v, dt.datetime):
                    assert v.isoformat(timespec="microseconds").replace("+00:00", "Z") == want
                elif isinstance(v, float):
                    assert v == float(want), (table, k)
                else:
                    assert str(v) == want, (table, k)
    # typed columns, for the tools reading them
    syst = pq.read_table(pq_dir / "system.parquet")
    assert str(syst.schema.field("meminfo_anon_pages_kb").type) == "int64"
    assert str(syst.schema.field("loadavg_load1").type) == "double"
    assert str(syst.schema.field("hostname").type) == "string"


def test_since_until_select_snapshots(tmp_path):
    t = _manifest_times()
    out = tmp_path / "one"
    assert main(["export", "--from", CAP, "--format", "csv", "--out", str(out),
                 "--since", repr(t[1] - 0.001), "--tables", "system,cpus"]) == 0
    assert len(read_csv(out / "system.csv")) == 1
    assert sorted(os.listdir(out)) == ["cpus.csv", "system.csv"]
    # an ISO time with a zone, one second after the last snapshot: nothing
    late = dt.datetime.fromtimestamp(t[1] + 1, dt.timezone.utc).isoformat()
    assert main(["export", "--from", CAP, "--format", "csv", "--out", str(tmp_path / "none"),
                 "--since", late]) == 3
    assert os.listdir(tmp_path / "none") == []


def test_parse_time_forms():
    from ksight.cli.export import parse_time
    from ksight.errors import UsageError

    assert parse_time("1767225600") == 1767225600.0
    assert parse_time("2026-01-01T00:00:00Z") == T0
    assert parse_time("2026-01-01T05:30+05:30") == T0
    assert parse_time("-2h", now=T0) == T0 - 7200
    assert parse_time("-30m", now=T0) == T0 - 1800
    with pytest.raises(UsageError):
        parse_time("yesterday-ish")


def test_a_column_that_appears_later_is_named_not_silently_lost(tmp_path, monkeypatch):
    monkeypatch.setattr(ex, "BATCH", 2)
    snaps = [snap(i, vm=dict(pgpgin=i)) for i in range(2)]
    snaps += [snap(i, vm=dict(pgpgin=i, brand_new_counter=7)) for i in range(2, 4)]
    res = ex.write_tables(snaps, str(tmp_path), "csv", tables=("system",))
    rows = read_csv(tmp_path / "system.csv")
    assert [r["vmstat_pgpgin"] for r in rows] == ["0", "1", "2", "3"]
    assert "vmstat_brand_new_counter" not in rows[0]
    assert any("vmstat_brand_new_counter" in n for n in res.notes)


def test_absent_is_null_not_zero(tmp_path):
    s = snap(0)
    res = ex.write_tables([s], str(tmp_path), "csv", tables=("system", "processes"))
    row = read_csv(tmp_path / "system.csv")[0]
    assert row["meminfo_swap_total_kb"] == ""  # synth's meminfo has no SwapTotal line
    assert row["meminfo_anon_pages_kb"] == "100000"
    assert any(n.startswith("processes: no row") for n in res.notes)
    assert not (tmp_path / "processes.csv").exists()


def test_db_without_the_store_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ksight.record.store", None)  # as if not installed
    rc = main(["export", "--db", str(tmp_path / "x.db"), "--format", "csv", "--out",
               str(tmp_path / "o")])
    assert rc == 3
    err = capsys.readouterr().err
    assert "ksight.record.store is missing" in err and "--from" in err


def test_bad_invocations_are_one_line_errors(tmp_path, capsys, monkeypatch):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["export", "--from", CAP, "--format", "csv", "--out", str(f)]) == 3
    assert "not a directory" in capsys.readouterr().err
    import ksight.cli.export as cli_export

    monkeypatch.setattr(cli_export, "_default_db", lambda: None)  # no recorder file here
    assert main(["export", "--format", "csv", "--out", str(tmp_path / "o")]) == 3
    assert "--db PATH" in capsys.readouterr().err
    assert main(["export", "--from", CAP, "--tables", "nope", "--out", str(tmp_path / "o")]) == 3
    assert "unknown nope" in capsys.readouterr().err
    assert main(["export", "--from", CAP, "--since", "10", "--until", "5",
                 "--out", str(tmp_path / "o")]) == 3
    assert "before --since" in capsys.readouterr().err


def test_files_are_owner_only(csv_dir):
    for name in os.listdir(csv_dir):
        assert os.stat(csv_dir / name).st_mode & 0o077 == 0, name


def test_json_summary(tmp_path, capsys):
    assert main(["export", "--from", CAP, "--format", "csv", "--out", str(tmp_path / "j"),
                 "--tables", "cpus", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    (t,) = doc["export"]["tables"]
    assert t["name"] == "cpus" and t["rows"] == 4 and doc["export"]["snapshots"] == 2


def test_cgroup_rows_are_the_cgroup_files(csv_dir):
    rows = read_csv(csv_dir / "cgroups.csv")
    last = [r for r in rows if float(r["unix_time"]) == pytest.approx(_manifest_times()[1], abs=1e-3)]
    assert {r["path"] for r in last} >= {"/", "/process_api"}
    for r in last:
        base = "0001/sys/fs/cgroup/memory" + ("" if r["path"] == "/" else r["path"])
        assert r["version"] == "1"
        assert r["current_bytes"] == _raw(f"{base}/memory.usage_in_bytes").strip()
        assert r["failcnt"] == _raw(f"{base}/memory.failcnt").strip()
        stat = dict(ln.split() for ln in _raw(f"{base}/memory.stat").splitlines())
        assert r["stat_cache"] == stat["cache"] and r["stat_rss"] == stat["rss"]


def test_a_time_before_now_is_given_with_equals(tmp_path, capsys):
    # the capture was taken before the last two hours: nothing to export
    assert main(["export", "--from", CAP, "--format", "csv", "--out", str(tmp_path / "r"),
                 "--since=-2h"]) == 3
    assert "nothing written" in capsys.readouterr().out


def test_db_reads_the_store_with_the_time_range(tmp_path, monkeypatch):
    """--db goes through ksight.record.store.Recording.open(path).snapshots(since, until) (the
    recorder branch's API); a stand-in store here."""
    import types

    calls = []

    class Recording:
        @classmethod
        def open(cls, path):
            calls.append(("open", path))
            return cls()

        def snapshots(self, since=None, until=None):
            calls.append(("snapshots", since, until))
            return iter([snap(i) for i in range(5)])

    monkeypatch.setitem(sys.modules, "ksight.record.store", types.SimpleNamespace(Recording=Recording))
    out = tmp_path / "db"
    assert main(["export", "--db", "x.db", "--format", "csv", "--out", str(out),
                 "--since", str(T0 + 1), "--until", "2026-01-01T00:00:03Z", "--tables", "system"]) == 0
    assert calls == [("open", "x.db"), ("snapshots", T0 + 1, T0 + 3)]
    rows = read_csv(out / "system.csv")
    assert [float(r["unix_time"]) for r in rows] == [T0 + 1, T0 + 2, T0 + 3]  # both ends kept


def test_undecodable_bytes_in_a_name_are_replaced_not_fatal(tmp_path):
    pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    from tests.browser.synth import process

    bad = b"x\xff".decode("utf-8", "surrogateescape")
    s = snap(0, procs=[process(7, "x", 10)])
    p = s.processes[7]
    from dataclasses import replace

    s = replace(s, processes={7: replace(p, comm=bad)})
    for fmt in ("csv", "parquet"):
        ex.write_tables([s], str(tmp_path), fmt, tables=("processes",))
    assert read_csv(tmp_path / "processes.csv")[0]["comm"] == "x\ufffd"
    assert pq.read_table(tmp_path / "processes.parquet").column("comm").to_pylist() == ["x\ufffd"]
