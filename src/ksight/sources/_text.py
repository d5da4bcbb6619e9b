"""Small helpers shared by the parsers: number parsing that fails with a useful ParseError,
and the common "Key: value [kB]" and "key value" line shapes.

Conventions every parser keeps (see docs/CONVENTIONS.md):
- parse(text, path=...) is pure; read(root) only fetches the text.
- Absent is None, never 0. Unknown lines are skipped on purpose (new kernels add fields).
- A malformed line of a kind we know raises ParseError(path, lineno, line, why).
"""

from __future__ import annotations

from collections.abc import Iterator

from ..errors import ParseError


def numbered_lines(text: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, line) for every non-blank line."""
    for i, line in enumerate(text.splitlines(), 1):
        if line.strip():
            yield i, line


def to_int(tok: str, path: str, lineno: int | None = None, line: str | None = None) -> int:
    try:
        return int(tok)
    except ValueError:
        raise ParseError(path, lineno, line, f"expected an integer, got {tok!r}") from None


def to_float(tok: str, path: str, lineno: int | None = None, line: str | None = None) -> float:
    try:
        return float(tok)
    except ValueError:
        raise ParseError(path, lineno, line, f"expected a number, got {tok!r}") from None


def colon_kv(text: str, path: str, *, strip_unit: str | None = "kB") -> dict[str, int]:
    """Parse "Name:   123 kB" lines (meminfo, node meminfo without the node prefix, status).

    Returns name -> integer in the file's own unit. A line without a colon is malformed; a value
    that is not an integer is malformed too.
    """
    out: dict[str, int] = {}
    for lineno, line in numbered_lines(text):
        name, sep, rest = line.partition(":")
        if not sep:
            raise ParseError(path, lineno, line, "expected 'Name: value'")
        toks = rest.split()
        if not toks:
            raise ParseError(path, lineno, line, "missing value")
        if len(toks) > 2 or (len(toks) == 2 and toks[1] != strip_unit):
            raise ParseError(path, lineno, line, "unexpected trailing text")
        out[name.strip()] = to_int(toks[0], path, lineno, line)
    return out


def space_kv(text: str, path: str) -> dict[str, int]:
    """Parse "name 123" lines (vmstat, numastat). Lines that are not two tokens are malformed."""
    fast = fast_space_kv(text)  # the kernel's usual text, in bulk
    if fast is not None:
        return fast
    out: dict[str, int] = {}
    for lineno, line in numbered_lines(text):
        toks = line.split()
        if len(toks) != 2:
            raise ParseError(path, lineno, line, "expected 'name value'")
        out[toks[0]] = to_int(toks[1], path, lineno, line)
    return out


def parse_cpulist(text: str, path: str = "cpulist") -> tuple[int, ...]:
    """'0-3,8,10-11' -> (0, 1, 2, 3, 8, 10, 11). Empty text is the empty list (no CPU).

    Also accepts the stride form 'a-b:step/group' (used by isolcpus) by expanding it."""
    s = text.strip()
    if not s:
        return ()
    out: list[int] = []
    for part in s.split(","):
        part = part.strip()
        try:
            if "-" in part:
                rng, _, stride = part.partition(":")
                lo_s, _, hi_s = rng.partition("-")
                lo, hi = int(lo_s), int(hi_s)
                if hi < lo:
                    raise ValueError
                if stride:
                    used_s, _, group_s = stride.partition("/")
                    used, group = int(used_s), int(group_s)
                    if used <= 0 or group <= 0:
                        raise ValueError
                    out.extend(c for c in range(lo, hi + 1) if (c - lo) % group < used)
                else:
                    out.extend(range(lo, hi + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise ParseError(path, 1, text, f"not a CPU list: {part!r}") from None
    return tuple(sorted(set(out)))


# ---- fast paths (same results as the line-by-line helpers above, or None to use them) --------

import re as _re

# "name value\n" lines, one space, '\n' the only line break, every line ended
_SPACE_KV_TEXT = _re.compile(r"(?:[^\s]+ -?[0-9]+\n)+")


def fast_space_kv(text: str) -> dict[str, int] | None:
    """space_kv for the common case, in bulk: the dict when every line is 'name value' with one
    space and an integer value, else None (then call the line-by-line parser, which gives the
    same dict or the ParseError)."""
    if not _SPACE_KV_TEXT.fullmatch(text):
        return None
    toks = text.split()
    return dict(zip(toks[::2], map(int, toks[1::2])))


_INT_LINES = _re.compile(r"(?:[0-9]+\n)*")


def fast_count_int_lines(text: str) -> int | None:
    """How many lines, when every line is a plain non-negative integer (cgroup.procs); else None."""
    if not _INT_LINES.fullmatch(text):
        return None
    return text.count("\n")
