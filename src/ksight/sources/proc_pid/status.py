"""/proc/PID/status: the human-readable process summary ("Key:<tab>value" lines).

Typed attributes for what ksight reasons about; `fields` keeps every line as text. Absent is
None: kernel threads print no Vm*/Rss* lines; RssAnon/RssFile/RssShmem appeared in 4.5,
VmSwap in 2.6.34, VmPin in 3.2, voluntary_ctxt_switches in 2.6.23. A known line that is
malformed (a Vm* value that is not "N kB", a Uid that is not numbers) raises ParseError.
"""

from __future__ import annotations

from dataclasses import field, fields
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define
from typing import Mapping

from ...errors import ParseError
from ...fs import Root
from .._text import require_complete, to_int

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
    # the file as read: `fields` gives every line (typed above or not) from it on demand
    text: str = field(default="", compare=False, repr=False, metadata={"json": False})

    @property
    def fields(self) -> Mapping[str, str]:
        """Every line as "Key: value" text (whitespace-trimmed), including untyped ones."""
        f = self.__dict__.get("_fields")
        if f is None:
            f = {}
            for line in self.text.split("\n"):
                k, sep, v = line.partition(":")
                if sep:
                    f[k] = v.strip()
            self.__dict__["_fields"] = f
        return f


_new = object.__new__
_NONE: dict = {}  # every dataclass field -> None (filled below the class)

# (the key as it starts a line, attribute, kind) for every typed line. Found with str.find on
# the whole text instead of splitting it into ~55 lines: the scan of 1,000 processes parses
# 1,000 status files per refresh, and building a dict of every line was most of its cost.
_TYPED = tuple(("\n" + k + ":", a, "int") for k, a in _INT.items()) + \
    tuple(("\n" + k + ":", a, "kb") for k, a in _KB.items()) + \
    (("\nUid:", "uid", "ids"), ("\nGid:", "gid", "ids"), ("\nState:", "state", "state"))


def _is_kb(v: str) -> bool:
    t = v.split()
    return len(t) == 2 and t[1] == "kB" and t[0].isdigit()


def parse(text: str, path: str = PATH) -> PidStatus:
    """Typed lines are found by their "\\nKey:" prefix and converted; anything unusual (a
    malformed value, no Name line) goes to the general parser, which gives the same result or
    the precise ParseError."""
    # the kernel prints every line as "Key:<tab>value": fewer ":<tab>" than lines means other
    # spacing (a hand-made file) or a line that is not "Key: value" -> the careful parser
    if not text.startswith("Name:") or text.count(":\t") < text.count("\n") or text[-1:] != "\n":
        return _parse_general(text, path)
    find = text.find
    d = _NONE.copy()
    e = find("\n")
    d["name"] = text[5:e].strip() if e > 0 else text[5:].strip()
    try:
        for key, attr, kind in _TYPED:
            i = find(key)
            if i < 0:
                continue
            i += len(key)
            j = find("\n", i)
            v = text[i:j] if j >= 0 else text[i:]
            # only plain ASCII digits, at most 19 (int() would also take '+7', '1_0', other
            # scripts' digits and values past 2^64): anything else goes to the strict parser
            if kind == "int":
                v = v.strip()
                if not (v.isascii() and v.isdigit() and len(v) < 20):
                    raise ValueError(v)
                d[attr] = int(v)
            elif kind == "kb":
                n, unit = v.split()
                if unit != "kB" or not (n.isascii() and n.isdigit() and len(n) < 20):
                    raise ValueError(v)
                d[attr] = int(n)
            elif kind == "ids":
                ids = v.split()
                if not all(x.isascii() and x.isdigit() and len(x) < 20 for x in ids):
                    raise ValueError(v)
                d[attr] = tuple(map(int, ids))
            else:
                d[attr] = v.strip()[:1] or None
    except ValueError:
        return _parse_general(text, path)
    d["text"] = text
    o = _new(PidStatus)  # a frozen dataclass filled through __dict__ (every field is set)
    o.__dict__.update(d)
    return o


def _parse_general(text: str, path: str) -> PidStatus:
    """Line by line, for any spacing; raises a ParseError that names the bad line."""
    require_complete(text, path)
    fields: dict[str, str] = {}
    for line in text.split("\n"):
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
        d["state"] = st[:1] or None
    for k, attr in _INT.items():
        v = fields.get(k)
        if v is not None:
            d[attr] = to_int(v, path, _lineno(text, k + ":"), f"{k}:{v}")
    for k, attr in (("Uid", "uid"), ("Gid", "gid")):
        v = fields.get(k)
        if v is not None:
            d[attr] = tuple(to_int(x, path, _lineno(text, k + ":"), f"{k}:{v}") for x in v.split())
    for k, attr in _KB.items():
        v = fields.get(k)
        if v is not None:
            if not _is_kb(v):
                raise ParseError(path, _lineno(text, k + ":"), f"{k}:{v}", "expected 'N kB'")
            d[attr] = to_int(v.split()[0], path, _lineno(text, k + ":"), f"{k}:{v}")
    d["text"] = text
    o = _new(PidStatus)
    o.__dict__.update(d)
    o.__dict__["_fields"] = fields
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
