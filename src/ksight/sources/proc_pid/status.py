"""/proc/PID/status: the human-readable process summary ("Key:<tab>value" lines).

Typed attributes for what ksight reasons about; `fields` keeps every line as text. Absent is
None: kernel threads print no Vm*/Rss* lines; RssAnon/RssFile/RssShmem appeared in 4.5,
VmSwap in 2.6.34, VmPin in 3.2, voluntary_ctxt_switches in 2.6.23. A known line that is
malformed (a Vm* value that is not "N kB", a Uid that is not numbers) raises ParseError.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from operator import itemgetter
from typing import Mapping

from ...errors import ParseError
from ...fs import Root

PATH = "proc/PID/status"


def path(pid: int) -> str:
    return f"proc/{pid}/status"


# status name -> attribute, for values printed as "N kB"
_KB = {
    "VmPeak": "vm_peak_kb", "VmSize": "vm_size_kb", "VmLck": "vm_lck_kb", "VmPin": "vm_pin_kb",
    "VmHWM": "vm_hwm_kb", "VmRSS": "vm_rss_kb", "RssAnon": "rss_anon_kb", "RssFile": "rss_file_kb",
    "RssShmem": "rss_shmem_kb", "VmData": "vm_data_kb", "VmStk": "vm_stk_kb", "VmExe": "vm_exe_kb",
    "VmLib": "vm_lib_kb", "VmPTE": "vm_pte_kb", "VmPMD": "vm_pmd_kb", "VmSwap": "vm_swap_kb",
    "HugetlbPages": "hugetlb_pages_kb",
}
# status name -> attribute, for plain integers
_INT = {
    "Tgid": "tgid", "Ngid": "ngid", "Pid": "pid", "PPid": "ppid", "TracerPid": "tracer_pid",
    "FDSize": "fd_size", "Threads": "threads",
    "voluntary_ctxt_switches": "voluntary_ctxt_switches",
    "nonvoluntary_ctxt_switches": "nonvoluntary_ctxt_switches",
}


@dataclass(frozen=True)
class PidStatus:
    name: str | None = None
    state: str | None = None  # the letter ("S"); fields["State"] has "S (sleeping)"
    tgid: int | None = None
    ngid: int | None = None
    pid: int | None = None
    ppid: int | None = None
    tracer_pid: int | None = None
    uid: tuple[int, ...] | None = None  # real, effective, saved, filesystem
    gid: tuple[int, ...] | None = None
    fd_size: int | None = None
    vm_peak_kb: int | None = None
    vm_size_kb: int | None = None
    vm_lck_kb: int | None = None
    vm_pin_kb: int | None = None
    vm_hwm_kb: int | None = None
    vm_rss_kb: int | None = None
    rss_anon_kb: int | None = None
    rss_file_kb: int | None = None
    rss_shmem_kb: int | None = None
    vm_data_kb: int | None = None
    vm_stk_kb: int | None = None
    vm_exe_kb: int | None = None
    vm_lib_kb: int | None = None
    vm_pte_kb: int | None = None
    vm_pmd_kb: int | None = None
    vm_swap_kb: int | None = None
    hugetlb_pages_kb: int | None = None
    threads: int | None = None
    voluntary_ctxt_switches: int | None = None
    nonvoluntary_ctxt_switches: int | None = None
    # every line, value as printed (whitespace-trimmed), including ones not typed above
    fields: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)


_new = object.__new__
_NONE: dict = {}  # every dataclass field -> None (filled below the class)


def _is_kb(v: str) -> bool:
    t = v.split()
    return len(t) == 2 and t[1] == "kB" and t[0].isdigit()


_INT_KEYS = tuple(_INT)
_INT_ATTRS = tuple(_INT.values())
_get_ints = itemgetter(*_INT_KEYS)
# VmPMD (4.0 to 4.14) is gone from current kernels: the bulk path takes the others
_KB_KEYS = tuple(k for k in _KB if k != "VmPMD")
_KB_ATTRS = tuple(_KB[k] for k in _KB_KEYS)
_get_kbs = itemgetter(*_KB_KEYS)
_NKB = len(_KB_KEYS)


def parse(text: str, path: str = PATH) -> PidStatus:
    """Fast path for what a current kernel prints: every line "Key:<tab>value", all typed keys
    present (or, for a kernel thread, no Vm*/Rss* line at all). The text is split once (every
    ":<tab>" and newline is a separator), numbers are converted in bulk, and anything unusual
    (other spacing, a missing key, a malformed value, a comm holding ":<tab>") goes to the
    general parser below, which gives the same result or the precise ParseError."""
    toks = text.replace(":\t", "\n").split("\n")
    if len(toks) != 2 * text.count("\n") + 1 or toks[-1]:
        return _parse_general(text, path)
    fields = dict(zip(toks[:-1:2], toks[1::2]))
    d = _NONE.copy()
    try:
        d["name"] = fields["Name"]
        d["state"] = fields["State"][:1] or None
        d.update(zip(_INT_ATTRS, map(int, _get_ints(fields))))
        d["uid"] = tuple(map(int, fields["Uid"].split()))
        d["gid"] = tuple(map(int, fields["Gid"].split()))
        if "VmSize" in fields:
            raw = _get_kbs(fields)
            kb = " ".join(raw).split()  # "N kB N kB ..."
            if len(kb) != 2 * _NKB or kb[1::2].count("kB") != _NKB:
                return _parse_general(text, path)
            d.update(zip(_KB_ATTRS, map(int, kb[::2])))
            fields.update(zip(_KB_KEYS, map(str.lstrip, raw)))  # the kernel pads them
            pmd = fields.get("VmPMD")
            if pmd is not None:
                pmd = pmd.split()
                if len(pmd) != 2 or pmd[1] != "kB":
                    return _parse_general(text, path)
                d["vm_pmd_kb"] = int(pmd[0])
                fields["VmPMD"] = " ".join(pmd)
        elif "VmRSS" in fields or "RssAnon" in fields:
            return _parse_general(text, path)
    except (KeyError, ValueError):
        return _parse_general(text, path)
    d["fields"] = fields
    o = _new(PidStatus)  # a frozen dataclass filled through __dict__ (every field is set)
    o.__dict__.update(d)
    return o


def _parse_general(text: str, path: str) -> PidStatus:
    # The kernel prints "Key:<tab>value"; other spacing (hand-made fixtures) takes the slow branch.
    fields: dict[str, str] = {}
    for line in text.split("\n"):
        k, sep, v = line.partition(":\t")
        if sep:
            fields[k] = v
        elif line:
            k, sep, v = line.partition(":")
            if sep:
                fields[k] = v.strip()
            elif line.strip():
                raise ParseError(path, _lineno(text, line), line, "expected 'Name: value'")
    if not fields:
        raise ParseError(path, None, None, "empty file")
    d = dict(_NONE)
    d["name"] = fields.get("Name")
    st = fields.get("State")
    if st:
        d["state"] = st.strip()[:1] or None
    # numbers are converted in bulk (map(int) over one list) and checked afterwards: the
    # per-line try/int/slice of a plain loop cost twice as much, and this runs per process
    keys = [k for k in _INT if k in fields]
    if keys:
        try:
            d.update(zip([_INT[k] for k in keys], map(int, [fields[k] for k in keys])))
        except ValueError:
            k = next(k for k in keys if not fields[k].strip().lstrip("-").isdigit())
            raise ParseError(path, _lineno(text, k + ":"), f"{k}:{fields[k]}", "expected an integer") from None
    for k, attr in (("Uid", "uid"), ("Gid", "gid")):
        v = fields.get(k)
        if v is not None:
            try:
                d[attr] = tuple(map(int, v.split()))
            except ValueError:
                raise ParseError(path, _lineno(text, k + ":"), f"{k}:{v}", "expected integers") from None
    keys = [k for k in _KB if k in fields]
    if keys:
        raw = [fields[k] for k in keys]
        toks = " ".join(raw).split()  # "N kB N kB ..."
        try:
            if len(toks) != 2 * len(raw) or toks[1::2].count("kB") != len(raw):
                raise ValueError
            d.update(zip([_KB[k] for k in keys], map(int, toks[::2])))
        except ValueError:
            k = next(k for k in keys if not _is_kb(fields[k]))
            raise ParseError(path, _lineno(text, k + ":"), f"{k}:{fields[k]}", "expected 'N kB'") from None
        fields.update(zip(keys, map(str.lstrip, raw)))  # the kernel pads them
    d["fields"] = fields
    # a frozen dataclass filled through __dict__ (30 object.__setattr__ calls cost more than
    # the parse: this runs once per process per refresh). Every field is set here.
    o = _new(PidStatus)
    o.__dict__.update(d)
    return o


def _lineno(text: str, start: str) -> int | None:
    for i, line in enumerate(text.split("\n"), 1):
        if line.startswith(start):
            return i
    return None


def read(root: Root, pid: int) -> PidStatus:
    p = path(pid)
    return parse(root.read_text(p), p)


_FIELD_NAMES = tuple(f.name for f in fields(PidStatus))
_NONE.update((n, None) for n in _FIELD_NAMES)
