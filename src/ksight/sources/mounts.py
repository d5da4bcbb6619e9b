"""/proc/self/mountinfo (fallback /proc/mounts): what is mounted where.

ksight uses it to find the cgroup hierarchies (v1 `cgroup` mounts with their controller in the
options, the `cgroup2` mount) and tracefs. mountinfo lines look like

    35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory
    (id parent major:minor root mount_point mount_options [optional...] - fstype source super_options)

/proc/mounts (older captures, e.g. PCP's) has one line per mount: `source mount_point fstype
options dump pass`; its options are the per-mount and superblock options merged, so from that
file `options` holds all of them and `super_options` is empty. Use Mount.all_options when you
only care whether an option is set.

The kernel escapes space, tab, newline and backslash in paths as octal (\\040, \\011, \\012,
\\134); those are decoded here. Mount points are absolute paths as the kernel prints them; use
Mount.rel for the root-relative form a Root takes.
"""

from __future__ import annotations

import re
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..errors import ParseError, Unavailable
from ..fs import Root
from ._text import numbered_lines, require_complete

PATH = "proc/self/mountinfo"
FALLBACK_PATH = "proc/mounts"

_OCTAL = re.compile(r"\\([0-7]{3})")


def unescape(s: str) -> str:
    """Decode the kernel's octal escapes (\\040 -> ' ')."""
    if "\\" not in s:
        return s
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), s)


@dataclass(frozen=True)
class Mount:
    mount_point: str
    fstype: str
    source: str
    options: tuple[str, ...]
    super_options: tuple[str, ...]
    # mountinfo's 4th field: the directory of the filesystem mounted here ('/' usually; a cgroup
    # path for a bind-mounted or namespaced cgroup). None when read from /proc/mounts.
    root: str | None = None
    devno: str | None = None  # mountinfo's "major:minor" of the filesystem (None from /proc/mounts)

    @property
    def rel(self) -> str:
        """The mount point as a Root path: '/sys/fs/cgroup' -> 'sys/fs/cgroup'."""
        return self.mount_point.lstrip("/")

    @property
    def all_options(self) -> frozenset[str]:
        return frozenset(self.options) | frozenset(self.super_options)


@dataclass(frozen=True)
class Mounts:
    entries: tuple[Mount, ...]

    def by_fstype(self, *fstypes: str) -> tuple[Mount, ...]:
        return tuple(m for m in self.entries if m.fstype in fstypes)

    def at(self, mount_point: str) -> Mount | None:
        """The mount visible at mount_point (the last one mounted there wins, as in the kernel)."""
        found = None
        for m in self.entries:
            if m.mount_point == mount_point:
                found = m
        return found


    def containing(self, path: str) -> Mount | None:
        """The mount that holds an absolute path (longest mount point prefix, last one wins)."""
        best = None
        for m in self.entries:
            mp = m.mount_point
            if path == mp or path.startswith(mp.rstrip("/") + "/"):
                if best is None or len(mp) >= len(best.mount_point):
                    best = m
        return best


def live() -> Mounts:
    """This process's mounts on the running machine (for the lab and tracing, which act live)."""
    from ..fs import LiveRoot

    return read(LiveRoot())


def _opts(s: str) -> tuple[str, ...]:
    return tuple(unescape(o) for o in s.split(",") if o)


def parse(text: str, path: str = PATH) -> Mounts:
    """Parse /proc/PID/mountinfo."""
    require_complete(text, path)
    out = []
    for lineno, line in numbered_lines(text):
        toks = line.split()
        try:
            sep = toks.index("-", 6)
        except ValueError:
            raise ParseError(path, lineno, line, "expected at least 6 fields, then ' - '") from None
        after = toks[sep + 1:]
        if len(after) < 2:
            raise ParseError(path, lineno, line, "expected 'fstype source [super_options]' after ' - '")
        out.append(Mount(
            mount_point=unescape(toks[4]),
            fstype=unescape(after[0]),
            source=unescape(after[1]),
            options=_opts(toks[5]),
            super_options=_opts(after[2]) if len(after) > 2 else (),
            root=unescape(toks[3]),
            devno=toks[2],
        ))
    if not out:
        raise ParseError(path, None, None, "no mounts listed")
    return Mounts(tuple(out))


def parse_mounts(text: str, path: str = FALLBACK_PATH) -> Mounts:
    """Parse /proc/mounts (/etc/mtab format)."""
    require_complete(text, path)
    out = []
    for lineno, line in numbered_lines(text):
        toks = line.split()
        if len(toks) < 4:
            raise ParseError(path, lineno, line, "expected 'source mount_point fstype options ...'")
        out.append(Mount(
            mount_point=unescape(toks[1]), fstype=unescape(toks[2]), source=unescape(toks[0]),
            options=_opts(toks[3]), super_options=(),
        ))
    if not out:
        raise ParseError(path, None, None, "no mounts listed")
    return Mounts(tuple(out))


def read(root: Root) -> Mounts:
    try:
        text = root.read_text(PATH)
    except Unavailable as first:
        try:
            text = root.read_text(FALLBACK_PATH)
        except Unavailable as second:
            raise Unavailable("mounts", f"{PATH}: {first.reason}; {FALLBACK_PATH}: {second.reason}") from None
        return parse_mounts(text)
    return parse(text)
