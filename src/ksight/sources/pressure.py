"""/proc/pressure/{cpu,memory,io,irq}: pressure stall information (PSI, kernel 4.20+).

Each file has a "some" line (at least one task stalled on the resource) and a "full" line
(all non-idle tasks stalled at once):

    some avg10=0.18 avg60=0.34 avg300=0.10 total=159886802
    full avg10=0.18 avg60=0.34 avg300=0.10 total=159229614

avgN are percentages of wall time over the last N seconds; total is cumulative stall time in
microseconds. proc/pressure/cpu has a "full" line since 5.13 (always zero at system level, it
means something only in cgroups); proc/pressure/irq (6.1+, CONFIG_IRQ_TIME_ACCOUNTING) has
only "full". A cgroup's cpu/memory/io.pressure has the same format: use parse_resource.
"""

from __future__ import annotations

from dataclasses import field
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..errors import ParseError, Unavailable
from ..fs import Root
from ._text import numbered_lines, require_complete, to_float, to_int

PATHS = {
    "cpu": "proc/pressure/cpu",
    "memory": "proc/pressure/memory",
    "io": "proc/pressure/io",
    "irq": "proc/pressure/irq",
}
PATH = "proc/pressure"
UNAVAILABLE_REASON = "PSI not available (kernel without CONFIG_PSI or booted with psi=0)"


@dataclass(frozen=True)
class PsiLine:
    avg10: float
    avg60: float
    avg300: float
    total_usec: int


@dataclass(frozen=True)
class PsiResource:
    some: PsiLine | None = None
    full: PsiLine | None = None


@dataclass(frozen=True)
class Pressure:
    cpu: PsiResource | None = None
    memory: PsiResource | None = None
    io: PsiResource | None = None
    irq: PsiResource | None = None  # 6.1+ with CONFIG_IRQ_TIME_ACCOUNTING; only "full"
    # resource -> why its file was not used (malformed or cut): one bad file does not take the
    # others with it
    malformed: dict[str, str] = field(default_factory=dict)


_KEYS = ("avg10", "avg60", "avg300", "total")


def _line(toks: list[str], path: str, lineno: int, line: str) -> PsiLine:
    vals: dict[str, str] = {}
    for t in toks:
        k, sep, v = t.partition("=")
        if not sep or not v:
            raise ParseError(path, lineno, line, f"expected key=value, got {t!r}")
        vals[k] = v
    missing = [k for k in _KEYS if k not in vals]
    if missing:
        raise ParseError(path, lineno, line, f"missing {', '.join(missing)}")
    return PsiLine(
        to_float(vals["avg10"], path, lineno, line),
        to_float(vals["avg60"], path, lineno, line),
        to_float(vals["avg300"], path, lineno, line),
        to_int(vals["total"], path, lineno, line),
    )


def parse_resource(text: str, path: str = "proc/pressure/memory") -> PsiResource:
    """One PSI file (system-wide or a cgroup's *.pressure)."""
    require_complete(text, path)
    lines: dict[str, PsiLine] = {}
    for lineno, line in numbered_lines(text):
        kind, *toks = line.split()
        if kind in ("some", "full"):
            lines[kind] = _line(toks, path, lineno, line)
        # other line kinds (none today) are skipped on purpose
    if not text.strip():
        raise ParseError(path, None, None, "empty file")
    return PsiResource(lines.get("some"), lines.get("full"))


def parse(texts: dict[str, str]) -> Pressure:
    """Resource name ("cpu", "memory", "io", "irq") -> file text; absent names are None."""
    return Pressure(**{name: parse_resource(t, PATHS[name]) for name, t in texts.items()
                       if name in PATHS})


def read(root: Root) -> Pressure:
    texts: dict[str, str] = {}
    for name, path in PATHS.items():
        try:
            texts[name] = root.read_text(path)
        except Unavailable:
            continue
    if not any(k in texts for k in ("cpu", "memory", "io")):
        raise Unavailable(PATH, UNAVAILABLE_REASON)
    got: dict[str, PsiResource] = {}
    bad: dict[str, str] = {}
    first_error = None
    for name, t in texts.items():
        try:
            got[name] = parse_resource(t, PATHS[name])
        except ParseError as e:
            bad[name] = str(e)
            first_error = first_error or e
    if not any(k in got for k in ("cpu", "memory", "io")) and first_error is not None:
        raise first_error
    return Pressure(**got, malformed=bad)
