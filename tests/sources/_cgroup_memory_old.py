"""The memory cgroup walk as it was before read_many (commit 0c8f9e1): one full-path read per
file through Root.text_reader, every group listed with listdirs. Kept only as the reference the
tests compare the current walk with, field by field (tests/sources/test_cgroup_memory_walk.py).
Since then it also gives each group its id (Root.dir_id: a stat of the path, where the walk
takes it from the fstat of the kept directory fd) and reads the files of a "NAME:limited" plan
name in the groups whose own limit (v2 memory.max/high, v1 limit_in_bytes) is below 2^62.
"""

from __future__ import annotations

import posixpath

from ksight.errors import Unavailable
from ksight.fs import Root, norm
from ksight.sources import mounts as _mounts
from ksight.sources.cgroup_memory import (
    MAX_DEPTH, MAX_GROUPS, CgroupMemory, MemCgroup, _base_path, _cond_spec, _parse_populated,
    _probe_field, _spec, _wanted, parse_value,
)


def _read_group(read_text, prefix: str, cg: str, version: int, spec, have=None, cond=(),
                gid=None) -> MemCgroup | None:
    """One group: every file of `spec` under `prefix` ('sys/fs/cgroup/x/'); an absent file is
    None. `have`: fields already read (the idle test's). None when the first file read is
    absent and the caller then finds the directory gone (see read_hierarchy)."""
    kw = dict(have) if have else {}
    for fld, name, parser in spec:
        if fld in kw:
            continue
        path = prefix + name
        try:
            text = read_text(path)
        except Unavailable:
            kw[fld] = None
            continue
        kw[fld] = parser(text, path)
    lims = ("high_bytes", "max_bytes") if version == 2 else ("max_bytes",)
    if cond and any(kw.get(x) is not None and kw[x] < 2**62 for x in lims):
        for fld, name, parser in cond:
            if fld in kw:
                continue
            try:
                kw[fld] = parser(read_text(prefix + name), prefix + name)
            except Unavailable:
                kw[fld] = None
    oom = kw.pop("oom", None)
    if oom:
        kw["oom_kill_disable"] = oom.get("oom_kill_disable")
        kw["under_oom"] = oom.get("under_oom")
        kw["oom_kill"] = oom.get("oom_kill")
    return MemCgroup(cg, version, **kw, id=gid)


def _zero(read_text, path: str, parser=None) -> bool | None:
    """True/False: the file's integer is 0 / not; None: absent."""
    try:
        text = read_text(path)
    except Unavailable:
        return None
    return (parser or parse_value)(text, path) == 0


def _count_below(root: Root, d: str, depth: int, max_depth: int) -> int:
    """How many groups lie below directory d (for the skipped count), within the walk bounds."""
    n = 0
    stack = [(d, depth)]
    while stack:
        x, dep = stack.pop()
        if dep >= max_depth:
            continue
        try:
            subs = root.listdirs(x)
        except Unavailable:
            continue
        n += len(subs)
        stack.extend((posixpath.join(x, s), dep + 1) for s in subs)
    return n


def read_hierarchy(root: Root, version: int, mount: _mounts.Mount, *,
                   max_depth: int = MAX_DEPTH, max_groups: int = MAX_GROUPS,
                   files=None) -> CgroupMemory:
    """Walk one memory hierarchy (see module doc for the bounds; `files`: see read)."""
    want = _wanted(files)
    spec = _spec(version, want)
    skip_idle = want is not None and "idle" not in want
    read_text = root.text_reader()  # live: a pre-joined open/read, same results and errors
    base = _base_path(mount)
    # walk: (dir, cgroup path, depth, parent index, fields already read or None)
    nodes: list[list] = []
    skipped = 0
    truncated = False
    # (dir, cgroup path, depth, parent index, whether the parent showed the subtree uncharged)
    stack: list[tuple[str, str, int, int, bool]] = [(mount.rel, base, 0, -1, False)]
    while stack:
        d, cg, depth, parent, uncharged = stack.pop()
        if len(nodes) >= max_groups:
            truncated = True
            break
        try:
            subdirs = root.listdirs(d)  # one directory read, no isdir per entry
        except Unavailable:
            if not nodes:
                raise  # the hierarchy's own directory is unreadable
            continue  # removed while we walked
        nd = norm(d)
        prefix = nd + "/" if nd else ""
        idle = False
        have = None
        uncharged = uncharged and skip_idle and version == 1
        if skip_idle and nodes:  # never the hierarchy's own group
            if version == 2:
                idle = _idle_v2(read_text, prefix)
                if idle:  # hierarchical: the whole subtree, files unopened
                    skipped += 1 + _count_below(root, d, depth, max_depth)
                    continue
            else:
                idle, have, uncharged = _idle_v1(read_text, prefix, spec, uncharged,
                                                 bool(subdirs))
        nodes.append([d, cg, depth, parent, have, idle, prefix])
        me = len(nodes) - 1
        if subdirs and depth >= max_depth:
            truncated = True
            continue
        for n in reversed(subdirs):  # reversed: pop() then visits them in sorted order
            stack.append((posixpath.join(d, n), posixpath.join(cg, n), depth + 1, me, uncharged))
    if skip_idle and version == 1:
        # a v1 group is skipped only when it and all its descendants are idle: children come
        # after their parent in the walk, so one pass from the end settles every subtree
        for i in range(len(nodes) - 1, 0, -1):
            p = nodes[i][3]
            if p >= 0 and not nodes[i][5]:
                nodes[p][5] = False
        skipped += sum(1 for x in nodes if x[5])
    probe = _probe_field(spec, None)
    groups: dict[str, MemCgroup] = {}
    for d, cg, _depth, _parent, have, idle, prefix in nodes:
        if idle:
            continue
        g = _read_group(read_text, prefix, cg, version, spec, have, _cond_spec(version, want, spec),
                        root.dir_id(d))
        # a group removed mid-read has files that read as None: only then ask whether it is gone
        if groups and (probe is None or getattr(g, probe) is None) and not root.isdir(d):
            continue
        groups[cg] = g
    return CgroupMemory(version=version, mount=mount.rel, groups=groups, truncated=truncated,
                        skipped_idle=skipped)


def _idle_v2(read_text, prefix: str) -> bool:
    """No task in the subtree (cgroup.events populated 0) and nothing charged to it (memory.current
    0, and memory.swap.current 0 or absent: without per-cgroup swap accounting no swap entry
    records a memcg, and swap-in charges the faulting task's group)."""
    try:
        text = read_text(prefix + "cgroup.events")
    except Unavailable:
        return False
    if _parse_populated(text, prefix + "cgroup.events") != 0:
        return False
    if _zero(read_text, prefix + "memory.current") is not True:
        return False
    return _zero(read_text, prefix + "memory.swap.current") is not False


def _idle_v1(read_text, prefix: str, spec, uncharged: bool,
             has_children: bool) -> tuple[bool, dict | None, bool]:
    """(idle, fields read on the way, whether the children are uncharged too): usage 0, memsw
    usage 0 or absent (no memsw accounting: no swap entry records a memcg, mm/memcontrol-v1.c),
    no thread in `tasks`. The usage read is kept when the plan asks for it, so a group with a
    charge costs no extra file. `uncharged`: the parent's hierarchical usage and memsw were 0,
    so this group's are (with memory.use_hierarchy 1 a child's page counters charge every
    ancestor's too: page_counter_try_charge walks c->parent), and only `tasks` is read."""
    have = None
    if not uncharged:
        path = prefix + "memory.usage_in_bytes"
        try:
            text = read_text(path)
        except Unavailable:
            return False, None, False
        usage = parse_value(text, path)
        if any(f == "current_bytes" for f, _n, _p in spec):
            have = {"current_bytes": usage}
        if usage != 0:
            return False, have, False
        if _zero(read_text, prefix + "memory.memsw.usage_in_bytes") is False:
            return False, have, False
        # the children are uncharged too only where this group's counters are hierarchical
        # (always since Linux 5.11, which removed use_hierarchy 0; before, per group). A leaf
        # has no children to tell: not read. (A parent is often charged itself: since 5.9 the
        # kernel charges a new child's own memcg structures to its parent, mem_cgroup_css_alloc.)
        uncharged = False
        if has_children:
            try:
                uncharged = read_text(prefix + "memory.use_hierarchy").strip() == "1"
            except Unavailable:
                pass
    try:
        tasks = read_text(prefix + "tasks")
    except Unavailable:
        return False, have, False
    return not tasks.strip(), have, uncharged
