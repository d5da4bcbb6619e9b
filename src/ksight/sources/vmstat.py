"""/proc/vmstat: VM counters ("name value" lines). Most are cumulative event counters
(pgscan_direct, allocstall_normal, workingset_refault_file, ...); those whose name starts with
nr_ are current page counts. Names change across kernels (pgsteal_kswapd_normal became
pgsteal_kswapd in 4.8, allocstall split per zone in 4.8, workingset_refault split into _anon and
_file in 5.9), so the source keeps every name and `total(prefix)` sums the variants."""

from __future__ import annotations

from dataclasses import field
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..errors import ParseError
from ..fs import Root
from ._text import space_kv

PATH = "proc/vmstat"


@dataclass(frozen=True)
class Vmstat:
    counters: dict[str, int] = field(default_factory=dict)

    def get(self, name: str) -> int | None:
        return self.counters.get(name)

    def total(self, *names: str, prefix: str | None = None) -> int | None:
        """Sum of the named counters that exist (and of every counter starting with prefix).

        None when none of them exists on this kernel, so "absent" never reads as 0."""
        vals = [self.counters[n] for n in names if n in self.counters]
        if prefix is not None:
            vals += [v for k, v in self.counters.items() if k.startswith(prefix) and k not in names]
        return sum(vals) if vals else None


def parse(text: str, path: str = PATH) -> Vmstat:
    # every value is printed unsigned (seq_put_decimal_ull); space_kv refuses a cut last line
    if "\n " in text or text.startswith(" "):
        # A value without a name (" 176096"): some 4.x kernels printed one counter more than
        # their name table held (PCP meminfo-root-006, node0/vmstat). Blank it, keeping line
        # numbers, instead of failing the whole file.
        text = "\n".join("" if ln.strip().isascii() and ln.strip().isdigit() else ln for ln in text.split("\n"))
    counters = space_kv(text, path)
    if not counters:
        raise ParseError(path, None, None, "empty file")
    return Vmstat(counters)


def read(root: Root) -> Vmstat:
    return parse(root.read_text(PATH))
