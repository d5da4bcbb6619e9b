"""Columnar export of snapshots (a recording or a capture) for pandas, DuckDB or Spark: one table
per kind of thing, typed columns, one row per snapshot (and per entity). docs/export.md lists the
tables and columns.

Tables:
  system      one row per snapshot: the time, /proc/meminfo (kB), /proc/vmstat, /proc/net/snmp
              and /proc/net/netstat counters, /proc/stat totals, /proc/loadavg, PSI
  processes   one row per process per snapshot, keyed by (boot_id, pid, start_ticks): a reused
              pid is another process
  cgroups     one row per memory cgroup per snapshot, keyed by path: limits, usage, memory.stat
              and memory.events
  cpus        one row per CPU per snapshot: /proc/stat ticks
  interfaces  one row per network interface per snapshot: /proc/net/dev
  disks       one row per block device per snapshot: /proc/diskstats

Values are what the kernel printed (cumulative counters stay cumulative, absent is null, never
0): rates are for the reader's tool (a window function over the time column), as docs/export.md
shows. This module only lays the parsed sources out as rows; the writers (csv, parquet) are in
`write_tables`.

Columns are fixed by the first BATCH snapshots of a table (a kernel does not add vmstat lines
while it runs; a new memory cgroup's memory.stat has the same keys). A column that first appears
later is not added (a Parquet file has one schema): it is counted in the result's notes by name.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import field
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..model.snapshot import Snapshot

TABLES = ("system", "processes", "cgroups", "cpus", "interfaces", "disks")
FORMATS = ("csv", "parquet")
BATCH = 256  # snapshots per batch (and per Parquet row group)
INT64_MAX = 2**63 - 1

# the sources a snapshot needs for the tables (optional: a table is empty without them)
SOURCES = ("meminfo", "vmstat", "snmp", "netstat", "stat", "loadavg", "pressure", "uptime",
           "cgroup_memory", "netdev", "diskstats")
PROCESS_PARTS = ("stat", "statm", "status", "oom")


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # "time" (UTC timestamp), "float", "int", "str"


@dataclass
class TableResult:
    name: str
    path: str | None  # None: no row, no file written
    rows: int = 0
    columns: tuple[Column, ...] = ()
    dropped_columns: dict[str, int] = field(default_factory=dict)  # name -> rows that had it


@dataclass
class ExportResult:
    format: str
    out_dir: str
    snapshots: int
    tables: list[TableResult]
    first: float | None = None  # unix time of the first and last snapshot exported
    last: float | None = None
    notes: list[str] = field(default_factory=list)


# ---- rows --------------------------------------------------------------------------------------

def _time_cols(s: Snapshot) -> dict:
    return {"time": s.taken_at, "unix_time": s.taken_at, "uptime_s": s.uptime_s,
            "boot_id": s.host.boot_id}


def _scalars(obj, prefix: str = "", skip: tuple[str, ...] = ()) -> dict:
    """The scalar fields of a dataclass (int, float, str, bool, None) as prefix + name."""
    out = {}
    for f in dataclasses.fields(obj):
        if f.name in skip or not _scalar_type(f.type):
            continue
        v = getattr(obj, f.name)
        if v is None or isinstance(v, (int, float, str, bool)):
            out[prefix + f.name] = v
    return out


_SCALAR_WORDS = frozenset(("int", "float", "str", "bool", "None", "Optional"))


def _scalar_type(annotation) -> bool:
    """A field declared as a scalar (`int | None`), not a dict or a dataclass that is None now:
    a column must not depend on whether the first row had a value."""
    if not isinstance(annotation, str):
        annotation = getattr(annotation, "__name__", str(annotation))
    return set(re.findall(r"[A-Za-z_]+", annotation)) <= _SCALAR_WORDS


def _groups(prefix: str, groups: dict[str, dict[str, int]]) -> dict:
    return {f"{prefix}_{g}_{k}": v for g, kv in groups.items() for k, v in kv.items()}


def system_row(s: Snapshot) -> dict:
    row = _time_cols(s)
    row.update(hostname=s.host.hostname, kernel=s.host.kernel)
    m = s.get("meminfo")
    if m is not None:
        row.update(_scalars(m, "meminfo_", skip=("fields",)))
    vm = s.get("vmstat")
    if vm is not None:
        row.update({f"vmstat_{k}": v for k, v in vm.counters.items()})
    for name in ("snmp", "netstat"):
        src = s.get(name)
        if src is not None:
            row.update(_groups(name, src.groups))
    st = s.get("stat")
    if st is not None:
        row.update(_scalars(st.cpu_total, "stat_cpu_"))
        row.update(_scalars(st, "stat_"))
    la = s.get("loadavg")
    if la is not None:
        row.update(_scalars(la, "loadavg_"))
    pr = s.get("pressure")
    if pr is not None:
        for res in ("cpu", "memory", "io", "irq"):
            r = getattr(pr, res, None)
            for kind in ("some", "full"):
                line = None if r is None else getattr(r, kind)
                if line is not None:
                    row[f"psi_{res}_{kind}_total_usec"] = line.total_usec
                    row[f"psi_{res}_{kind}_avg10"] = float(line.avg10)
    return row


def process_rows(s: Snapshot) -> Iterator[dict]:
    if not s.processes:
        return
    base = _time_cols(s)
    for pid, p in s.processes.items():
        st = p.stat
        row = dict(base)
        row.update(
            pid=pid, start_ticks=st.starttime_ticks if st else None, comm=p.comm,
            state=st.state if st else None, ppid=st.ppid if st else None,
            num_threads=st.num_threads if st else None,
            utime_ticks=st.utime_ticks if st else None, stime_ticks=st.stime_ticks if st else None,
            minflt_total=st.minflt_total if st else None,
            majflt_total=st.majflt_total if st else None,
            virt_kb=p.virt_kb, rss_kb=p.res_kb, shared_kb=p.shr_kb,
            swap_kb=p.status.vm_swap_kb if p.status is not None else None,
            oom_score=p.oom.score if p.oom is not None else None,
            oom_score_adj=p.oom.score_adj if p.oom is not None else None)
        yield row


def cgroup_rows(s: Snapshot) -> Iterator[dict]:
    cm = s.get("cgroup_memory")
    if cm is None:
        return
    base = _time_cols(s)
    for path, g in cm.groups.items():
        row = dict(base)
        row.update(_scalars(g))
        row["path"] = path
        for name in ("stat", "events"):
            d = getattr(g, name, None)
            if d:
                row.update({f"{name}_{k}": v for k, v in d.items()})
        yield row


def cpu_rows(s: Snapshot) -> Iterator[dict]:
    st = s.get("stat")
    if st is None:
        return
    base = _time_cols(s)
    for n, c in st.cpus.items():
        row = dict(base)
        row["cpu"] = n
        row.update(_scalars(c))
        yield row


def _named_rows(source: str, attr: str, key: str) -> Callable[[Snapshot], Iterator[dict]]:
    def rows(s: Snapshot) -> Iterator[dict]:
        src = s.get(source)
        if src is None:
            return
        base = _time_cols(s)
        for name, e in getattr(src, attr).items():
            row = dict(base)
            row[key] = name
            row.update(_scalars(e, skip=("name",)))
            yield row
    return rows


ROWS: dict[str, Callable[[Snapshot], Iterable[dict]]] = {
    "system": lambda s: (system_row(s),),
    "processes": process_rows,
    "cgroups": cgroup_rows,
    "cpus": cpu_rows,
    "interfaces": _named_rows("netdev", "interfaces", "interface"),
    "disks": _named_rows("diskstats", "devices", "device"),
}
# columns every row of a table starts with, in this order (the keys first)
LEADING = {
    "system": ("time", "unix_time", "uptime_s", "boot_id", "hostname", "kernel"),
    "processes": ("time", "unix_time", "uptime_s", "boot_id", "pid", "start_ticks", "comm"),
    "cgroups": ("time", "unix_time", "uptime_s", "boot_id", "path"),
    "cpus": ("time", "unix_time", "uptime_s", "boot_id", "cpu"),
    "interfaces": ("time", "unix_time", "uptime_s", "boot_id", "interface"),
    "disks": ("time", "unix_time", "uptime_s", "boot_id", "device"),
}
_FIXED_TYPES = {"time": "time", "unix_time": "float", "uptime_s": "float", "boot_id": "str",
                "hostname": "str", "kernel": "str", "comm": "str", "path": "str", "state": "str",
                "interface": "str", "device": "str", "name": "str"}


def _type_of(name: str, values: list) -> str:
    if name in _FIXED_TYPES:
        return _FIXED_TYPES[name]
    kinds = {type(v) for v in values if v is not None}
    if str in kinds:
        return "str"
    if float in kinds:
        return "float"
    return "int"


def _cell(v, typ: str):
    """A value as its column's type; an int past int64 (a u64 sentinel) is null."""
    if v is None:
        return None
    if typ == "int":
        if isinstance(v, bool):
            return int(v)
        if isinstance(v, float):
            return int(v) if v.is_integer() else None
        return v if -INT64_MAX - 1 <= v <= INT64_MAX else None
    if typ == "float" or typ == "time":
        v = float(v)
        return v if math.isfinite(v) else None
    v = str(v)
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes kept as surrogates: U+FFFD, as the parsers do
        v = v.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return v


# ---- writers -----------------------------------------------------------------------------------

class _CsvSink:
    def __init__(self, path: str, columns: tuple[Column, ...]):
        self.columns = columns
        self.f = open(path, "w", newline="", encoding="utf-8")
        self.w = csv.writer(self.f)
        self.w.writerow([c.name for c in columns])

    @staticmethod
    def _fmt(v, typ: str) -> str:
        if v is None:
            return ""
        if typ == "time":
            return _dt.datetime.fromtimestamp(v, _dt.timezone.utc).isoformat(
                timespec="microseconds").replace("+00:00", "Z")
        if typ == "float":
            return repr(v)
        return str(v)

    def write(self, rows: list[tuple]) -> None:
        types = [c.type for c in self.columns]
        self.w.writerows([self._fmt(v, t) for v, t in zip(r, types)] for r in rows)

    def close(self) -> None:
        self.f.close()


class _ParquetSink:
    def __init__(self, path: str, columns: tuple[Column, ...], table: str):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.pa = pa
        types = {"time": pa.timestamp("us", tz="UTC"), "float": pa.float64(), "int": pa.int64(),
                 "str": pa.string()}
        self.columns = columns
        self.schema = pa.schema([pa.field(c.name, types[c.type]) for c in columns],
                                metadata={b"ksight.table": table.encode(),
                                          b"ksight.doc": b"docs/export.md"})
        self.w = pq.ParquetWriter(path, self.schema, compression="zstd")

    def write(self, rows: list[tuple]) -> None:
        pa = self.pa
        arrays = []
        for k, c in enumerate(self.columns):
            vals = [r[k] for r in rows]
            if c.type == "time":
                vals = [None if v is None else round(v * 1_000_000) for v in vals]
                arrays.append(pa.array(vals, pa.int64()).cast(self.schema.field(k).type))
            else:
                arrays.append(pa.array(vals, self.schema.field(k).type))
        self.w.write_table(pa.Table.from_arrays(arrays, schema=self.schema))

    def close(self) -> None:
        self.w.close()


class _Table:
    def __init__(self, name: str, fmt: str, out_dir: str):
        self.name, self.fmt, self.out_dir = name, fmt, out_dir
        self.buf: list[dict] = []
        self.sink = None
        self.result = TableResult(name, None)

    def add(self, rows: Iterable[dict]) -> None:
        self.buf.extend(rows)

    def flush(self) -> None:
        if not self.buf:
            return
        if self.sink is None:
            self._open()
        cols = self.result.columns
        names = {c.name for c in cols}
        for r in self.buf:
            for k in r:
                if k not in names:
                    self.result.dropped_columns[k] = self.result.dropped_columns.get(k, 0) + 1
        rows = [tuple(_cell(r.get(c.name), c.type) for c in cols) for r in self.buf]
        self.sink.write(rows)
        self.result.rows += len(rows)
        self.buf = []

    def _open(self) -> None:
        seen: dict[str, list] = {}
        for r in self.buf:
            for k, v in r.items():
                seen.setdefault(k, []).append(v)
        lead = [n for n in LEADING[self.name] if n in seen or n in ("time", "unix_time")]
        rest = [n for n in seen if n not in lead]
        cols = tuple(Column(n, _type_of(n, seen.get(n, []))) for n in lead + rest)
        path = os.path.join(self.out_dir, f"{self.name}.{self.fmt}")
        self.sink = (_CsvSink(path, cols) if self.fmt == "csv"
                     else _ParquetSink(path, cols, self.name))
        self.result.columns = cols
        self.result.path = path

    def close(self) -> None:
        self.flush()
        if self.sink is not None:
            self.sink.close()


def write_tables(snapshots: Iterable[Snapshot], out_dir: str, fmt: str, *,
                 tables: Iterable[str] = TABLES, since: float | None = None,
                 until: float | None = None) -> ExportResult:
    """Write one file per table (`<out_dir>/<table>.<fmt>`) from snapshots in time order;
    snapshots outside [since, until] (unix time) are left out. A table with no row gets no file."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} not one of {', '.join(FORMATS)}")
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            from ..errors import UsageError

            raise UsageError("--format parquet needs pyarrow: pip install 'ksight[parquet]' "
                             "(or use --format csv)") from None
    names = tuple(tables)
    bad = [t for t in names if t not in TABLES]
    if bad:
        raise ValueError(f"unknown tables {bad}; known: {', '.join(TABLES)}")
    tabs = {n: _Table(n, fmt, out_dir) for n in names}
    res = ExportResult(fmt, out_dir, 0, [t.result for t in tabs.values()])
    n_batch = 0
    no_clock = 0
    try:
        for s in snapshots:
            t = s.taken_at
            if (since is not None or until is not None) and t is None:
                no_clock += 1
                continue
            if since is not None and t < since or until is not None and t > until:
                continue
            res.snapshots += 1
            if t is not None:
                res.first = t if res.first is None else min(res.first, t)
                res.last = t if res.last is None else max(res.last, t)
            for n, tab in tabs.items():
                tab.add(ROWS[n](s))
            n_batch += 1
            if n_batch >= BATCH:
                for tab in tabs.values():
                    tab.flush()
                n_batch = 0
    finally:
        for tab in tabs.values():
            tab.close()
    if no_clock:
        res.notes.append(f"{no_clock} snapshot(s) without a wall clock left out of the time range")
    for tab in tabs.values():
        r = tab.result
        if r.dropped_columns:
            res.notes.append(f"{r.name}: {len(r.dropped_columns)} column(s) first seen after the "
                             f"first {BATCH} snapshots were not exported: "
                             + ", ".join(sorted(r.dropped_columns)[:10]))
        if r.rows == 0:
            res.notes.append(f"{r.name}: no row (nothing of this kind in the snapshots)")
    return res


__all__ = ["write_tables", "ExportResult", "TableResult", "Column", "TABLES", "FORMATS",
           "SOURCES", "PROCESS_PARTS", "system_row", "process_rows", "cgroup_rows", "cpu_rows"]
