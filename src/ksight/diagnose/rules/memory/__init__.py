"""Memory leak rules: who is growing (a process, its mappings), and what the kernel holds that
no process does (shmem/tmpfs, orphan SysV segments, slab caches, vmalloc callers, OOM kills,
memory no counter explains).

One module per family; importing the package registers every rule. Rules read the snapshot model
only, through Context: processes keyed by (pid, start time), gauges with trends (judge the trend,
not two points), counters by name.
"""

from . import process_growth, system  # noqa: F401  (registers the rules)
