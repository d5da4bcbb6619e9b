"""/proc/sys: the sysctls ksight reasons about.

NAMES lists them in dotted form (`vm.swappiness`); adding one is one line. Each is read on its
own through `root.read_sysctl` (a 128-byte read buffer; see fs.py and bench/sysctl_read.py).
A sysctl that cannot be read is recorded in `missing` with a reason; for the ones that come and
go with kernel versions the reason carries that history, so "absent" reads as expected, not as a
fault (vm.drop_caches is left out on purpose: it is write-only in effect).

Values are kept as the kernel printed them (trimmed; tabs inside multi-value ones such as
net.ipv4.tcp_mem kept). parse() checks the shape of the ones ksight knows: a single integer, a
list of integers, or free text (congestion control names). A value of the wrong shape is a
ParseError naming the /proc/sys path.
"""

from __future__ import annotations

from dataclasses import field
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..errors import ParseError, Unavailable
from ..fs import Root, sysctl_path
from ._text import to_int

NAMES: tuple[str, ...] = (
    # memory: watermarks, writeback, reclaim, overcommit
    "vm.min_free_kbytes",
    "vm.watermark_scale_factor",
    "vm.watermark_boost_factor",
    "vm.dirty_background_bytes",
    "vm.dirty_background_ratio",
    "vm.dirty_bytes",
    "vm.dirty_ratio",
    "vm.dirty_expire_centisecs",
    "vm.dirty_writeback_centisecs",
    "vm.zone_reclaim_mode",
    "vm.swappiness",
    "vm.vfs_cache_pressure",
    "vm.overcommit_memory",
    "vm.overcommit_ratio",
    "vm.panic_on_oom",
    "vm.oom_dump_tasks",
    "vm.oom_kill_allocating_task",
    "vm.max_map_count",
    "vm.compaction_proactiveness",
    # TCP
    "net.ipv4.tcp_syn_retries",
    "net.ipv4.tcp_synack_retries",
    "net.ipv4.tcp_max_syn_backlog",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.tcp_abort_on_overflow",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_max_tw_buckets",
    "net.ipv4.tcp_tw_reuse",
    "net.ipv4.tcp_tw_recycle",
    "net.ipv4.tcp_wmem",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_mem",
    "net.ipv4.tcp_moderate_rcvbuf",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_congestion_control",
    "net.ipv4.tcp_available_congestion_control",
    "net.ipv4.tcp_slow_start_after_idle",
    # core networking
    "net.core.somaxconn",
    "net.core.wmem_max",
    "net.core.rmem_max",
    "net.core.wmem_default",
    "net.core.rmem_default",
    "net.core.netdev_budget",
    "net.core.netdev_budget_usecs",
    "net.core.netdev_max_backlog",
    # kernel
    "kernel.printk",
    "kernel.pid_max",
    "kernel.threads-max",
)

# Sysctls whose value is several integers separated by whitespace (tabs on Linux).
MULTI_INT: frozenset[str] = frozenset({
    "net.ipv4.tcp_wmem", "net.ipv4.tcp_rmem", "net.ipv4.tcp_mem", "net.ipv4.ip_local_port_range",
    "kernel.printk",
})
# Sysctls whose value is text; every other name in NAMES is a single integer.
TEXT: frozenset[str] = frozenset({
    "net.ipv4.tcp_congestion_control", "net.ipv4.tcp_available_congestion_control",
})

# Why a sysctl may be absent on a perfectly healthy kernel.
HISTORY: dict[str, str] = {
    "net.ipv4.tcp_tw_recycle": "absent: removed in Linux 4.12",
    "vm.compaction_proactiveness": "absent: added in 5.9",
    "net.core.netdev_budget_usecs": "absent: added in 4.12",
    "vm.watermark_boost_factor": "absent: added in 5.0",
}

_MISSING = "missing (not on this kernel or not captured)"


@dataclass(frozen=True)
class Sysctls:
    # dotted name -> value as printed (whitespace-trimmed)
    values: dict[str, str] = field(default_factory=dict)
    # dotted name -> why it could not be read
    missing: dict[str, str] = field(default_factory=dict)

    def text(self, name: str) -> str | None:
        return self.values.get(name)

    def int(self, name: str) -> int | None:
        """A single-integer sysctl, or None when it was not read."""
        v = self.values.get(name)
        if v is None:
            return None
        return _one_int(name, v)

    def ints(self, name: str) -> tuple[int, ...] | None:
        """A multi-integer sysctl ('4096\\t131072\\t6291456' -> (4096, 131072, 6291456))."""
        v = self.values.get(name)
        if v is None:
            return None
        return _int_list(name, v)


def _one_int(name: str, v: str) -> int:
    toks = v.split()
    if len(toks) != 1:
        raise ParseError(sysctl_path(name), 1, v, "expected one integer")
    # sysctls are printed %d, %u, %ld or %lu (proc_dointvec, proc_doulongvec_minmax): signed
    return to_int(toks[0], sysctl_path(name), 1, v, signed=True)


def _int_list(name: str, v: str) -> tuple[int, ...]:
    toks = v.split()
    if not toks:
        raise ParseError(sysctl_path(name), 1, v, "expected integers, got nothing")
    return tuple(to_int(t, sysctl_path(name), 1, v, signed=True) for t in toks)


def absent_reason(name: str, reason: str = _MISSING) -> str:
    """The reason shown for a sysctl that could not be read (with its history if it has one)."""
    if reason == _MISSING and name in HISTORY:
        return HISTORY[name]
    return reason


def parse(values: dict[str, str], missing: dict[str, str] | None = None, *,
          strict: bool = False) -> Sysctls:
    """Check and keep sysctl values (name -> text as read). Pure.

    A value of the wrong shape is moved to `missing` with the ParseError's message, so one odd
    sysctl does not take the others with it (strict=True raises instead, for tests).
    Names of NAMES that are neither in `values` nor in `missing` are recorded as missing.
    Names outside NAMES are kept unchecked.
    """
    vals: dict[str, str] = {}
    miss = dict(missing or {})
    for name, raw in values.items():
        v = raw.strip()
        try:
            if name in TEXT:
                if not v:
                    raise ParseError(sysctl_path(name), 1, raw, "empty value")
            elif name in MULTI_INT:
                _int_list(name, v)
            elif name in NAMES:
                _one_int(name, v)
        except ParseError as e:
            if strict:
                raise
            miss[name] = f"malformed: {e}"
            continue
        vals[name] = v
    for name in NAMES:
        if name not in vals and name not in miss:
            miss[name] = absent_reason(name)
    return Sysctls(values=vals, missing=miss)


def _dir_missing(root: Root, name: str) -> str | None:
    """The /proc/sys directory a sysctl lives in, when the tree has no such directory at all
    (a capture without /proc/sys, or without that part of it): then the file is missing from
    the capture, and saying the kernel lacks it ("added in 5.0") would be wrong."""
    d = sysctl_path(name).lstrip("/").rsplit("/", 1)[0]
    try:
        return None if root.isdir(d) else d
    except Exception:  # a root that cannot tell: keep the usual reason
        return None


def read(root: Root, names: tuple[str, ...] = NAMES) -> Sysctls:
    values: dict[str, str] = {}
    missing: dict[str, str] = {}
    for name in names:
        try:
            values[name] = root.read_sysctl(name)
        except Unavailable as u:
            d = _dir_missing(root, name) if u.reason == _MISSING else None
            missing[name] = (f"missing from the capture: it has no /{d}" if d
                             else absent_reason(name, u.reason))
    for name in NAMES:  # parse() would give these the kernel-history reason
        if name not in values and name not in missing:
            d = _dir_missing(root, name)
            if d:
                missing[name] = f"missing from the capture: it has no /{d}"
    return parse(values, missing)
