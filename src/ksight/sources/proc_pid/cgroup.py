"""/proc/PID/cgroup: the cgroup of a process in each hierarchy, `id:controllers:path`.

cgroup v1 has one line per mounted hierarchy ('4:memory:/user.slice', '2:cpu,cpuacct:/',
'1:name=systemd:/...'); cgroup v2 has the single line '0::/path'. A hybrid host has both.

path_for(controller) rule: the path of the v1 hierarchy whose controller list names it (the
literal 'name=systemd' also matches); when no v1 hierarchy has it, the v2 line's path (a v2
controller is enabled per subtree, so the unified path is where its files live, if enabled);
None when neither exists.
"""

from __future__ import annotations

from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ...fs import Root
from .._text import bad, require_complete, to_int

PATH = "proc/PID/cgroup"


def path(pid: int) -> str:
    return f"proc/{pid}/cgroup"


@dataclass(frozen=True)
class CgroupLine:
    hierarchy_id: int
    controllers: tuple[str, ...]  # () for the v2 line
    path: str


@dataclass(frozen=True)
class PidCgroups:
    lines: tuple[CgroupLine, ...]

    @property
    def v2_path(self) -> str | None:
        for ln in self.lines:
            if ln.hierarchy_id == 0 and not ln.controllers:
                return ln.path
        return None

    def path_for(self, controller: str) -> str | None:
        for ln in self.lines:
            if controller in ln.controllers:
                return ln.path
        return self.v2_path


def parse(text: str, path: str = PATH) -> PidCgroups:
    require_complete(text, path)
    lines = []
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        parts = line.split(":", 2)  # the path itself may hold ':'
        if len(parts) != 3 or not parts[0].isdigit():
            raise bad(path, lineno, line, "expected 'id:controllers:path'")
        ctl = tuple(c for c in parts[1].split(",") if c)
        lines.append(CgroupLine(to_int(parts[0], path, lineno, line), ctl, parts[2]))
    return PidCgroups(tuple(lines))


def read(root: Root, pid: int) -> PidCgroups:
    p = path(pid)
    return parse(root.read_text(p), p)
