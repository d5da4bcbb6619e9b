"""/proc/PID/limits: the process's resource limits (getrlimit), one table row per limit:
`Max open files            1024                 4096                 files`.

soft/hard are ints, or None for "unlimited". The unit column is absent for 'Max nice priority'
and 'Max realtime priority' (unit None). Names are as the kernel prints them ('Max open files').
"""

from __future__ import annotations

from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ...errors import ParseError
from ...fs import Root
from .._text import require_complete, to_int

PATH = "proc/PID/limits"


def path(pid: int) -> str:
    return f"proc/{pid}/limits"


@dataclass(frozen=True)
class Limit:
    name: str
    soft: int | None  # None: unlimited
    hard: int | None
    unit: str | None


@dataclass(frozen=True)
class Limits:
    limits: dict[str, Limit]

    def get(self, name: str) -> Limit | None:
        return self.limits.get(name)

    @property
    def open_files(self) -> Limit | None:
        return self.limits.get("Max open files")


def _value(tok: str, path: str, lineno: int, line: str) -> int | None:
    if tok == "unlimited":
        return None
    return to_int(tok, path, lineno, line)  # %-20lu


def parse(text: str, path: str = PATH) -> Limits:
    require_complete(text, path)
    out: dict[str, Limit] = {}
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip() or line.startswith("Limit "):
            continue
        toks = line.split()
        # the name is every word before the first value ("unlimited" or a number)
        i = next((j for j, t in enumerate(toks) if t == "unlimited" or (t.isascii() and t.isdigit())), None)
        if not i or len(toks) - i not in (2, 3):
            raise ParseError(path, lineno, line, "expected 'Name  soft  hard  [unit]'")
        name = " ".join(toks[:i])
        out[name] = Limit(name, _value(toks[i], path, lineno, line), _value(toks[i + 1], path, lineno, line),
                          toks[i + 2] if len(toks) - i == 3 else None)
    if not out:
        raise ParseError(path, None, None, "no limits (empty file)")
    return Limits(out)


def read(root: Root, pid: int) -> Limits:
    p = path(pid)
    return parse(root.read_text(p), p)
