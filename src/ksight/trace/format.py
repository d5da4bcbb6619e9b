"""Parse a tracefs event `format` file and compile it into a fast binary decoder.

Every event under tracefs `events/SYSTEM/NAME/format` describes its binary record:

    name: mm_vmscan_direct_reclaim_end
    ID: 412
    format:
    	field:unsigned short common_type;	offset:0;	size:2;	signed:0;
    	...
    	field:unsigned long nr_reclaimed;	offset:8;	size:8;	signed:0;

    print fmt: "nr_reclaimed=%lu", REC->nr_reclaimed

We read only the `field:` lines (type, name, offset, size, signed) and build one
`struct.Struct` per event, so a new kernel with new or moved fields needs no code change.
Field kinds handled: integers of 1/2/4/8 bytes (signed or not), `char x[N]` (a NUL-padded
string), other fixed arrays (`__u8 saddr[4]` -> bytes, `long v[3]` -> tuple), and
`__data_loc` (a 32-bit (length << 16 | offset) pointing into the record: strings, dynamic
arrays). Pointers are unsigned integers of the pointer size.
"""

from __future__ import annotations

import re
import struct
from dataclasses import field
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..errors import ParseError

_FIELD = re.compile(
    r"^\s*field:(?P<decl>[^;]+);\s*offset:(?P<off>\d+);\s*size:(?P<size>\d+);"
    r"(?:\s*signed:(?P<signed>-?\d+);)?")
_ARRAY = re.compile(r"^(?P<type>.*?)\s*\b(?P<name>\w+)\s*\[(?P<n>\w*)\]$")
_INT_CODES = {(1, 0): "B", (1, 1): "b", (2, 0): "H", (2, 1): "h", (4, 0): "I", (4, 1): "i",
              (8, 0): "Q", (8, 1): "q"}


@dataclass(frozen=True)
class Field:
    name: str
    type: str          # the C type as the kernel wrote it, e.g. "unsigned long", "__u8"
    offset: int
    size: int
    signed: bool
    array_len: int | None = None   # N for `type name[N]`; 0 for `[]` (only with __data_loc)
    data_loc: bool = False

    @property
    def is_string(self) -> bool:
        base = self.type.replace("const", "").replace("__data_loc", "").strip()
        return base in ("char", "unsigned char") and self.array_len is not None and (
            self.data_loc or base == "char")


@dataclass(frozen=True)
class EventFormat:
    system: str
    name: str
    id: int
    fields: tuple[Field, ...]          # without the common_* header fields
    common: tuple[Field, ...]          # common_type, common_flags, common_preempt_count, common_pid
    print_fmt: str = ""

    @property
    def full_name(self) -> str:
        return f"{self.system}:{self.name}"

    def field(self, name: str) -> Field | None:
        for f in self.fields:
            if f.name == name:
                return f
        return None


def _parse_decl(decl: str, off: int, size: int, signed: bool, path: str, lineno: int,
                line: str) -> Field:
    decl = decl.strip()
    data_loc = False
    if decl.startswith("__data_loc"):
        data_loc = True
        decl = decl[len("__data_loc"):].strip()
    elif decl.startswith("__rel_loc"):
        data_loc = True  # relative variant; treated as data_loc with a relative offset
        decl = decl[len("__rel_loc"):].strip()
    m = _ARRAY.match(decl)
    if m:
        n = m.group("n")
        array_len = int(n) if n.isdigit() else 0
        return Field(m.group("name"), m.group("type").strip(), off, size, signed, array_len, data_loc)
    toks = decl.replace("*", " * ").split()
    if len(toks) < 2:
        raise ParseError(path, lineno, line, "expected 'type name' in field declaration")
    name = toks[-1]
    typ = " ".join(toks[:-1])
    array_len = None
    if data_loc and typ.endswith("[]"):  # `__data_loc char[] comm`: the brackets sit on the type
        typ, array_len = typ[:-2].strip(), 0
    return Field(name, typ, off, size, signed, array_len, data_loc)


def parse(text: str, system: str = "", path: str = "events/format") -> EventFormat:
    """Parse one event format file. `system` fills in when the file does not say it."""
    name = None
    ev_id = None
    fields: list[Field] = []
    print_fmt = ""
    for lineno, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s:
            continue
        if s.startswith("name:"):
            name = s[5:].strip()
        elif s.startswith("ID:"):
            tok = s[3:].strip()
            if not tok.isdigit():
                raise ParseError(path, lineno, line, f"expected an integer ID, got {tok!r}")
            ev_id = int(tok)
        elif s.startswith("field:"):
            m = _FIELD.match(s)
            if not m:
                raise ParseError(path, lineno, line, "malformed field line")
            signed = (m.group("signed") or "0") not in ("0",)
            fields.append(_parse_decl(m.group("decl"), int(m.group("off")), int(m.group("size")),
                                      signed, path, lineno, line))
        elif s.startswith("print fmt:"):
            print_fmt = s[len("print fmt:"):].strip()
    if name is None or ev_id is None:
        raise ParseError(path, None, None, "format file has no 'name:' or 'ID:' line")
    if not fields:
        raise ParseError(path, None, None, "format file has no field lines")
    common = tuple(f for f in fields if f.name.startswith("common_"))
    rest = tuple(f for f in fields if not f.name.startswith("common_"))
    return EventFormat(system, name, ev_id, rest, common, print_fmt)


@dataclass
class Decoder:
    """A compiled reader for one event: `decode(buf, off)` -> (pid, {field: value})."""

    fmt: EventFormat
    struct: struct.Struct
    names: tuple[str, ...]
    post: tuple = ()                          # (name, kind, extra) fix-ups after unpacking
    pid_first: bool = True
    _simple: bool = field(default=True)

    def decode(self, buf, off: int):
        vals = self.struct.unpack_from(buf, off)
        d = dict(zip(self.names, vals[1:]))
        if self.post:
            for name, kind, extra in self.post:
                v = d[name]
                if kind == "str":
                    d[name] = v.split(b"\0", 1)[0].decode("utf-8", "replace")
                elif kind == "tuple":
                    d[name] = tuple(vals[extra[0] + 1: extra[0] + 1 + extra[1]])
                elif kind == "loc_str" or kind == "loc_bytes":
                    o, n = v & 0xFFFF, v >> 16
                    if extra:  # __rel_loc: offset counts from the end of the field
                        o += extra
                    raw = bytes(buf[off + o: off + o + n])
                    d[name] = raw.split(b"\0", 1)[0].decode("utf-8", "replace") if kind == "loc_str" else raw
        return vals[0], d


def compile_format(fmt: EventFormat, byteorder: str = "<", long_size: int = 8) -> Decoder:
    """Build one struct for the record: common_pid, then every field at its offset."""
    pid = next((f for f in fmt.common if f.name == "common_pid"), None)
    if pid is None or pid.size != 4:
        raise ParseError(fmt.full_name, None, None, "no 4-byte common_pid field")
    parts = []
    pos = pid.offset
    parts.append("x" * pid.offset + "i")
    pos = pid.offset + 4
    names: list[str] = []
    post = []
    nvals = 0  # values after pid
    tuple_fix = []
    for f in sorted(fmt.fields, key=lambda f: f.offset):
        if f.offset < pos:
            continue  # overlapping declaration (unions); keep the first
        if f.offset > pos:
            parts.append(f"{f.offset - pos}x")
        pos = f.offset + f.size
        if f.data_loc:
            parts.append("I")
            names.append(f.name)
            nvals += 1
            rel = (f.offset + f.size) if "rel" in f.type else 0
            post.append((f.name, "loc_str" if f.is_string else "loc_bytes", rel))
            continue
        if f.array_len is not None:
            n = f.array_len
            elem = f.size // n if n else f.size
            if f.is_string or elem == 1:
                parts.append(f"{f.size}s")
                names.append(f.name)
                nvals += 1
                if f.is_string:
                    post.append((f.name, "str", None))
                continue
            code = _INT_CODES.get((elem, int(f.signed)))
            if code is None or n * elem != f.size:
                parts.append(f"{f.size}s")
                names.append(f.name)
                nvals += 1
                continue
            # A numeric array: unpack n values, then gather them into a tuple under one name.
            parts.append(code * n)
            first = nvals
            for i in range(n):
                names.append(f"{f.name}[{i}]" if i else f.name)
            nvals += n
            tuple_fix.append((f.name, first, n))
            continue
        code = _INT_CODES.get((f.size, int(f.signed)))
        if code is None:
            parts.append(f"{f.size}s")
        else:
            parts.append(code)
        names.append(f.name)
        nvals += 1
    for name, first, n in tuple_fix:
        post.append((name, "tuple", (first, n)))
    st = struct.Struct(byteorder + "".join(parts))
    dec = Decoder(fmt, st, tuple(names), tuple(post))
    if tuple_fix:
        # drop the helper names "x[1]".. after gathering; done in a wrapper for clarity
        base = dec.decode
        extra = tuple(n for n in names if "[" in n)

        def decode(buf, off, _base=base, _extra=extra):
            pid, d = _base(buf, off)
            for k in _extra:
                d.pop(k, None)
            return pid, d

        dec.decode = decode  # type: ignore[method-assign]
    return dec
