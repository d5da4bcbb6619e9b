"""Small helpers shared by the parsers: number parsing that fails with a useful ParseError,
and the common "Key: value [kB]" and "key value" line shapes.

Conventions every parser keeps (see docs/CONVENTIONS.md):
- parse(text, path=...) is pure; read(root) only fetches the text.
- Absent is None, never 0. Unknown lines are skipped on purpose (new kernels add fields).
- A malformed line of a kind we know raises ParseError(path, lineno, line, why).

Numbers: what the kernel prints, nothing else (issue 8: "a value that cannot be true is an
error that names the file and line, never a number"). Python's int() and float() take far
more than the kernel ever prints ('+77', '1_0_0', ' 7 ', Arabic-Indic digits, 'inf', 'nan',
'1e9', 5,000-digit strings that raise a ValueError of their own), so every number a parser
reads goes through to_int / to_float / to_hex here:
- to_int: ASCII digits only, at most 20 of them, value <= 2^64-1 (the kernel's widest counter
  is an unsigned 64-bit). A leading '-' only with signed=True, which a parser passes only for
  fields the kernel prints with a signed format AND whose value may really be negative:
  snmp Tcp MaxConn (-1), swaps priority, zoneinfo "prev_priority"/lowmem_reserve (%ld),
  sockstat (%d), sysvipc key (%d), sysctl values, sysfs speed/die_id/package_id (-1 = unknown),
  proc_pid/stat's signed columns, oom_score_adj. Everything printed with %u/%lu/%llu
  (meminfo's show_val_kb, vmstat's seq_put_decimal_ull, stat, diskstats, netdev, pressure
  total, slabinfo, buddyinfo, smaps, statm, ...) is unsigned and a '-' there is an error.
- to_float: the kernel prints its few decimals as "%lu.%02lu" (uptime, loadavg, pressure
  avg10/60/300): ASCII digits with an optional fraction. No sign, no exponent, no inf/nan,
  so the value is always finite and >= 0.
- to_hex: ASCII hex digits only, at most 16 (no '0x', '_' or sign: the kernel prints %x/%lx).
- Error messages quote at most ~40 characters of the bad token and ~100 of the line, so a
  1 MB line gives a short error.

Cut files (require_complete): every line the kernel prints ends with '\n', so live procfs and
sysfs text always ends with one; a text that does not (a capture cut while it was written, a
truncated archive member) has a last line that may be cut mid-number: 'pgfault 1' where the
kernel printed 'pgfault 10404402'. What that line says is not known, so:
- line-oriented files (every parser in sources/ and sources/proc_pid/ except those below):
  ParseError naming the file and the cut line. Dropping the line instead would turn a cut
  file into a plausible one with a counter silently absent; the error puts "cut" in front
  of the user, and the collector records the source as missing with that reason.
  One exception keeps values that are certainly whole: a last line that ends with ')' or
  ' kB' (zoneinfo's "protection: (0, 0)", meminfo/status/smaps "Name: 123 kB") was cut, if at
  all, after its last value, since the kernel prints nothing after those on the line (a cut
  inside them leaves ' k' or no ')', which the parsers refuse). Test fixtures from other
  projects (gopsutil's meminfo, node_exporter's zoneinfo) were saved that way.
- single values that reach a parser already stripped (read_sysctl; the sysfs one-value files
  netclass and cpu_topology read): not checked here, nothing tells a cut one apart; the
  number itself is still checked.
- /proc/PID/cmdline: NUL-separated, the kernel adds no newline: not checked.
"""

from __future__ import annotations

import re as _re
from collections.abc import Iterator

from ..errors import ParseError

U64_MAX = (1 << 64) - 1
S64_MIN = -(1 << 63)
_TOK_SHOWN = 40  # characters of a bad token quoted in a message
_LINE_SHOWN = 100  # characters of a bad line kept on the ParseError


def clip(s: str, n: int = _TOK_SHOWN) -> str:
    """repr(s), cut to about n characters (a 1 MB token must not make a 1 MB message)."""
    if len(s) <= n:
        return repr(s)
    return f"{s[:n]!r}... ({len(s)} chars)"


def shown_line(line: str | None) -> str | None:
    """The line as kept on a ParseError: at most ~_LINE_SHOWN characters."""
    if line is None or len(line) <= _LINE_SHOWN:
        return line
    return f"{line[:_LINE_SHOWN]}... ({len(line)} chars)"


def bad(path: str, lineno: int | None, line: str | None, why: str) -> ParseError:
    """A ParseError whose line is clipped (raise bad(...))."""
    return ParseError(path, lineno, shown_line(line), why)


def require_complete(text: str, path: str) -> None:
    """ParseError when the text's last line has no newline: it was cut (see the module doc).
    Empty text is not cut (some files are legally empty). Cheap: one character is looked at."""
    if text and text[-1] != "\n" and text[-1] != ")" and not text.endswith(" kB"):
        lineno = text.count("\n") + 1
        last = text[text.rfind("\n") + 1:]
        raise bad(path, lineno, last, "last line cut off: no newline at the end of the file "
                                      "(a truncated capture?); its values cannot be trusted")


def numbered_lines(text: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, line) for every non-blank line."""
    for i, line in enumerate(text.splitlines(), 1):
        if line.strip():
            yield i, line


def is_uint(tok: str) -> bool:
    """tok is an unsigned decimal as the kernel prints it (ASCII digits, <= 2^64-1)."""
    return tok.isascii() and tok.isdigit() and (len(tok) < 20 or (len(tok) == 20 and int(tok) <= U64_MAX))


def to_int(tok: str, path: str, lineno: int | None = None, line: str | None = None, *,
           signed: bool = False) -> int:
    """The integer the kernel printed, or ParseError (rules in the module doc)."""
    if tok.isascii() and tok.isdigit() and len(tok) < 20:  # the common case, cheaply
        return int(tok)
    neg = signed and tok[:1] == "-"
    digits = tok[1:] if neg else tok
    if not (digits.isascii() and digits.isdigit()):
        if tok[:1] == "-" and tok[1:].isascii() and tok[1:].isdigit():
            why = f"negative value where the kernel prints an unsigned number: {clip(tok)}"
        else:
            kind = "an integer" if signed else "an unsigned integer"
            why = f"expected {kind} (ASCII digits), got {clip(tok)}"
        raise bad(path, lineno, line, why)
    if len(digits) > 20:
        raise bad(path, lineno, line, f"number with {len(digits)} digits: above 2^64-1, "
                                      f"the kernel's widest counter: {clip(tok)}")
    v = -int(digits) if neg else int(digits)
    if v > U64_MAX or v < S64_MIN:
        raise bad(path, lineno, line, f"{clip(tok)} is outside 64 bits, the kernel's widest counter")
    return v


_DECIMAL = _re.compile(r"[0-9]{1,20}(?:\.[0-9]{1,9})?", _re.ASCII)


def to_float(tok: str, path: str, lineno: int | None = None, line: str | None = None) -> float:
    """A decimal as the kernel prints it ("%lu.%02lu"): finite and >= 0, or ParseError."""
    if not _DECIMAL.fullmatch(tok):
        raise bad(path, lineno, line, f"expected a decimal number like 12.34, got {clip(tok)}")
    return float(tok)


_HEX = _re.compile(r"[0-9a-fA-F]{1,16}")


def to_hex(tok: str, path: str, lineno: int | None = None, line: str | None = None) -> int:
    """A hexadecimal number as the kernel prints it (%x, %lx: no 0x, no sign, <= 16 digits)."""
    if not _HEX.fullmatch(tok):
        raise bad(path, lineno, line, f"expected a hexadecimal number, got {clip(tok)}")
    return int(tok, 16)


def colon_kv(text: str, path: str, *, strip_unit: str | None = "kB") -> dict[str, int]:
    """Parse "Name:   123 kB" lines (meminfo, node meminfo without the node prefix, status).

    Returns name -> integer in the file's own unit. A line without a colon is malformed; a value
    that is not an integer is malformed too.
    """
    require_complete(text, path)
    out: dict[str, int] = {}
    for lineno, line in numbered_lines(text):
        name, sep, rest = line.partition(":")
        if not sep:
            raise bad(path, lineno, line, "expected 'Name: value'")
        toks = rest.split()
        if not toks:
            raise bad(path, lineno, line, "missing value")
        if len(toks) > 2 or (len(toks) == 2 and toks[1] != strip_unit):
            raise bad(path, lineno, line, "unexpected trailing text")
        out[name.strip()] = to_int(toks[0], path, lineno, line)
    return out


def space_kv(text: str, path: str) -> dict[str, int]:
    """Parse "name 123" lines (vmstat, numastat). Lines that are not two tokens are malformed."""
    fast = fast_space_kv(text)  # the kernel's usual text, in bulk
    if fast is not None:
        return fast
    require_complete(text, path)
    out: dict[str, int] = {}
    for lineno, line in numbered_lines(text):
        toks = line.split()
        if len(toks) != 2:
            raise bad(path, lineno, line, "expected 'name value'")
        out[toks[0]] = to_int(toks[1], path, lineno, line)
    return out


MAX_CPUS = 1 << 16  # above any NR_CPUS a kernel is built with (x86 caps it at 8192)


def parse_cpulist(text: str, path: str = "cpulist") -> tuple[int, ...]:
    """'0-3,8,10-11' -> (0, 1, 2, 3, 8, 10, 11). Empty text is the empty list (no CPU).

    Also accepts the stride form 'a-b:step/group' (used by isolcpus) by expanding it. CPU
    numbers are ASCII digits below MAX_CPUS (a hostile '0-99999999999' must not expand)."""
    s = text.strip()
    if not s:
        return ()
    out: list[int] = []

    def num(tok: str) -> int:
        if not (tok.isascii() and tok.isdigit() and len(tok) <= 6) or int(tok) >= MAX_CPUS:
            raise ValueError
        return int(tok)

    for part in s.split(","):
        part = part.strip()
        try:
            if "-" in part:
                rng, _, stride = part.partition(":")
                lo_s, _, hi_s = rng.partition("-")
                lo, hi = num(lo_s), num(hi_s)
                if hi < lo:
                    raise ValueError
                if stride:
                    used_s, _, group_s = stride.partition("/")
                    used, group = num(used_s), num(group_s)
                    if used <= 0 or group <= 0:
                        raise ValueError
                    out.extend(c for c in range(lo, hi + 1) if (c - lo) % group < used)
                else:
                    out.extend(range(lo, hi + 1))
            else:
                out.append(num(part))
        except ValueError:
            raise bad(path, 1, text, f"not a CPU list: {clip(part)}") from None
    return tuple(sorted(set(out)))


# ---- fast paths (same results as the line-by-line helpers above, or None to use them) --------

# "name value\n" lines, one space, '\n' the only line break, every line ended
# (values unsigned, at most 20 digits: what the strict to_int accepts, bar the 2^64 check below)
_SPACE_KV_TEXT = _re.compile(r"(?:[^\s]+ [0-9]{1,20}\n)+")


def fast_space_kv(text: str) -> dict[str, int] | None:
    """space_kv for the common case, in bulk: the dict when every line is 'name value' with one
    space and an integer value, else None (then call the line-by-line parser, which gives the
    same dict or the ParseError)."""
    if not _SPACE_KV_TEXT.fullmatch(text):
        return None
    toks = text.split()
    vals = list(map(int, toks[1::2]))
    if max(vals) > U64_MAX:  # a 20-digit value above 2^64-1: the slow path names it
        return None
    return dict(zip(toks[::2], vals))


_INT_LINES = _re.compile(r"(?:[0-9]{1,19}\n)*")


def fast_count_int_lines(text: str) -> int | None:
    """How many lines, when every line is a plain non-negative integer (cgroup.procs); else None."""
    if not _INT_LINES.fullmatch(text):
        return None
    return text.count("\n")
