"""CPU topology and caches from /sys/devices/system/cpu.

Read per CPU:
    cpuN/topology/{physical_package_id,core_id,die_id,thread_siblings_list,core_siblings_list}
    cpuN/cache/indexM/{level,type,size,coherency_line_size,ways_of_associativity,shared_cpu_list}
and the system-wide `online` list. Caches are deduplicated: one CacheInfo per distinct cache
instance, i.e. per distinct (level, type, shared_cpu_list), however many CPUs point at it.

Absent is None: die_id appeared in 5.2; older kernels and some captures lack the *_list files
(then the hex masks thread_siblings/core_siblings are decoded); an offline CPU has no topology
directory; some VMs and arm boards expose no cache directory at all (caches=()). `online` is
None when the file is missing (then the cpuN directories are the only list of CPUs).
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import field
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..errors import ParseError, Unavailable
from ..fs import Root
from ._text import MAX_CPUS, bad, parse_cpulist, to_int

BASE = "sys/devices/system/cpu"
PATH = BASE + "/online"
_CPU_DIR = re.compile(r"^cpu([0-9]{1,6})$")
_INDEX_DIR = re.compile(r"^index([0-9]{1,6})$")
_SIZE = re.compile(r"^([0-9]{1,19})([KMG]?)$")


def parse_cpumask(text: str, path: str = PATH) -> tuple[int, ...]:
    """Hex mask as sysfs prints it ('ff', '00000000,00000011') -> CPU numbers."""
    s = text.strip().replace(",", "")
    if not s:
        return ()
    # ASCII hex only ('0x', '_', signs refused), at most MAX_CPUS bits
    if len(s) > MAX_CPUS // 4 or not s.isascii() or not s.isalnum() or s[:2] in ("0x", "0X"):
        raise bad(path, 1, text, "not a hex CPU mask")
    try:
        v = int(s, 16)
    except ValueError:
        raise bad(path, 1, text, "not a hex CPU mask") from None
    return tuple(i for i in range(v.bit_length()) if v >> i & 1)


def parse_cache_size_kb(text: str, path: str) -> int:
    """'32K' -> 32, '16384K' -> 16384, '8M' -> 8192, '512' (bytes) -> 0 ... kept exact in kB."""
    m = _SIZE.match(text.strip())
    if not m:
        raise ParseError(path, 1, text, "expected a cache size like '32K'")
    n, unit = to_int(m.group(1), path, 1, text), m.group(2)
    return {"": n // 1024, "K": n, "M": n * 1024, "G": n * 1024 * 1024}[unit]


@dataclass(frozen=True)
class CpuInfo:
    cpu: int
    package_id: int | None = None
    core_id: int | None = None
    die_id: int | None = None
    thread_siblings: tuple[int, ...] | None = None  # CPUs sharing this core (SMT siblings)
    core_siblings: tuple[int, ...] | None = None  # CPUs in this package


@dataclass(frozen=True)
class CacheInfo:
    level: int
    type: str  # 'Data' | 'Instruction' | 'Unified'
    size_kb: int | None
    line_size: int | None
    ways: int | None
    shared_cpus: tuple[int, ...]
    id: int | None = None  # cache/indexM/id (4.14+), unique per level and type


@dataclass(frozen=True)
class CpuTopology:
    cpus: dict[int, CpuInfo] = field(default_factory=dict)
    online: tuple[int, ...] | None = None
    caches: tuple[CacheInfo, ...] = ()

    @property
    def packages(self) -> int | None:
        ids = {c.package_id for c in self.cpus.values() if c.package_id is not None}
        return len(ids) or None

    @property
    def cores(self) -> int | None:
        ids = {(c.package_id, c.die_id, c.core_id) for c in self.cpus.values() if c.core_id is not None}
        return len(ids) or None

    @property
    def smt(self) -> bool | None:
        sib = [c.thread_siblings for c in self.cpus.values() if c.thread_siblings is not None]
        return any(len(s) > 1 for s in sib) if sib else None

    def cache(self, level: int, type: str = "Unified") -> list[CacheInfo]:
        return [c for c in self.caches if c.level == level and c.type == type]


def _text(root: Root, path: str) -> str | None:
    try:
        return root.read_text(path).strip()
    except Unavailable:
        return None


def _int(root: Root, path: str) -> int | None:
    t = _text(root, path)
    if t is None or t == "":
        return None
    # ids are printed with %d: die_id and physical_package_id are -1 when unknown
    return to_int(t, path, 1, t, signed=True)


def _cpus(root: Root, d: str, name: str) -> tuple[int, ...] | None:
    """<name>_list if present, else the hex mask <name>."""
    p = posixpath.join(d, name + "_list")
    t = _text(root, p)
    if t is not None:
        return parse_cpulist(t, p)
    p = posixpath.join(d, name)
    t = _text(root, p)
    return None if t is None else parse_cpumask(t, p)


def read_cpu(root: Root, cpu: int) -> CpuInfo:
    d = f"{BASE}/cpu{cpu}/topology"
    die = _int(root, d + "/die_id")
    return CpuInfo(
        cpu=cpu,
        package_id=_int(root, d + "/physical_package_id"),
        core_id=_int(root, d + "/core_id"),
        die_id=die,
        thread_siblings=_cpus(root, d, "thread_siblings"),
        core_siblings=_cpus(root, d, "core_siblings"),
    )


def read_caches(root: Root, cpu: int) -> list[CacheInfo]:
    d = f"{BASE}/cpu{cpu}/cache"
    try:
        names = root.listdir(d)
    except Unavailable:
        return []
    out = []
    for name in names:
        if not _INDEX_DIR.match(name):
            continue
        ix = f"{d}/{name}"
        level = _int(root, ix + "/level")
        ctype = _text(root, ix + "/type")
        if level is None or not ctype:
            continue  # an index directory without level/type is not usable
        size_t = _text(root, ix + "/size")
        shared = _cpus(root, ix, "shared_cpu")
        out.append(CacheInfo(
            level=level, type=ctype,
            size_kb=parse_cache_size_kb(size_t, ix + "/size") if size_t else None,
            line_size=_int(root, ix + "/coherency_line_size"),
            ways=_int(root, ix + "/ways_of_associativity"),
            shared_cpus=shared if shared is not None else (cpu,),
            id=_int(root, ix + "/id"),
        ))
    return out


def read(root: Root) -> CpuTopology:
    names = root.listdir(BASE)  # raises Unavailable when there is no cpu directory at all
    present = sorted(int(m.group(1)) for n in names if (m := _CPU_DIR.match(n)))
    online_t = _text(root, PATH)
    online = parse_cpulist(online_t, PATH) if online_t is not None else None
    cpus: dict[int, CpuInfo] = {}
    caches: dict[tuple, CacheInfo] = {}
    for cpu in present:
        if not root.isdir(f"{BASE}/cpu{cpu}/topology"):
            continue  # offline CPU: the kernel removes its topology directory
        cpus[cpu] = read_cpu(root, cpu)
        for c in read_caches(root, cpu):
            caches.setdefault((c.level, c.type, c.shared_cpus), c)
    ordered = tuple(sorted(caches.values(), key=lambda c: (c.level, c.type, c.shared_cpus)))
    return CpuTopology(cpus=cpus, online=online, caches=ordered)
