"""The /proc/vmstat and memory.stat counters the page cache rules read, by name.

Names are checked against what kernels have printed (model.counter_names) when this module is
imported: a misspelt counter fails the test suite instead of silently never firing.
"""

from ....model.counters import cg, total, vm

ALLOCSTALL = vm("allocstall", since="per zone before 4.8, summed here")
PGSCAN_DIRECT = vm("pgscan_direct")
PGSTEAL_DIRECT = vm("pgsteal_direct")
PGSCAN_KSWAPD = vm("pgscan_kswapd")
PGSTEAL_KSWAPD = vm("pgsteal_kswapd")
PGSCAN = total("pgscan", PGSCAN_KSWAPD, PGSCAN_DIRECT)
# before 3.4: pgsteal_<zone> counted every steal (kswapd and direct), kswapd_steal kswapd's part
PGSTEAL = total("pgsteal", PGSTEAL_KSWAPD, PGSTEAL_DIRECT, fallback=vm("pgsteal"))
PSWPIN = vm("pswpin")
PSWPOUT = vm("pswpout")
SWAP_IO = total("pswpin + pswpout", PSWPIN, PSWPOUT)
DROP_PAGECACHE = vm("drop_pagecache", since="not on this kernel; real 4.2 and pre-4.8 captures have it")
DROP_SLAB = vm("drop_slab", since="not on this kernel; real 4.2 and pre-4.8 captures have it")
PGINODESTEAL = vm("pginodesteal")
KSWAPD_INODESTEAL = vm("kswapd_inodesteal")
INODESTEAL = total("inodesteal", PGINODESTEAL, KSWAPD_INODESTEAL)
# file refaults: split into _anon and _file in 5.9; one counter from 3.15 to 5.8
REFAULT_FILE = vm("workingset_refault_file", "workingset_refault", since="Linux 3.15 and later")
ACTIVATE_FILE = vm("workingset_activate_file", "workingset_activate", since="Linux 3.15 and later")
COMPACT_STALL = vm("compact_stall", since="CONFIG_COMPACTION")
COMPACT_FAIL = vm("compact_fail", since="CONFIG_COMPACTION")
ZONE_RECLAIM_FAILED = vm("zone_reclaim_failed", since="NUMA kernels")
NR_DIRTIED = vm("nr_dirtied")
NR_WRITTEN = vm("nr_written")

# memory cgroups
CG_REFAULT_FILE = cg("workingset_refault_file", "workingset_refault", "total_workingset_refault_file")
CG_STAT_RATES = (cg("pgscan_direct"), cg("pgsteal_direct"), cg("pgscan"), cg("pgsteal"),
                 cg("pgmajfault"), cg("total_pgmajfault"), cg("pgpgout"),
                 cg("workingset_refault_file"))

# ---- cache loss, swap, dirty, major faults (thrashing, swap-io, dirty-backlog,
# ---- major-fault-storm); the reclaim counters are declared in their own block
# Working-set refaults (mm/workingset.c workingset_refault(): WORKINGSET_REFAULT is counted
# before workingset_test_recent()'s distance test; WORKINGSET_ACTIVATE only for refaults within
# the working-set distance; WORKINGSET_RESTORE (5.9+, `workingset_restore` 5.8) for pages that
# were in the active working set when evicted).
RESTORE_FILE = vm("workingset_restore_file", "workingset_restore", since="Linux 5.8 and later")
PGMAJFAULT = vm("pgmajfault")
PGLAZYFREE = vm("pglazyfree", since="Linux 4.12 and later")
PGLAZYFREED = vm("pglazyfreed", since="Linux 4.12 and later")
# memory.stat: v2 keys are hierarchical (the group and its descendants); v1 has the local key
# and a hierarchical total_* one. Local first, so the leaf-most group is the one named.
CG_ACTIVATE_FILE = cg("workingset_activate_file", "workingset_activate")
CG_PGMAJFAULT = cg("pgmajfault")
# v1: the local key only (never total_*): the group's own refaults, so the leaf-most group that
# refaults is named; v2 has only hierarchical keys (ties go to the deepest path).
CG_REFAULT_LOCAL = cg("workingset_refault_file", "workingset_refault")
# ---- end of the cache-loss / swap / dirty block

# ---- reclaim causes (reclaim.py; issue 9) ---------------------------------------------------
# pgscan_direct_throttle: tasks put to sleep in throttle_direct_reclaim() (mm/vmscan.c) because
# the node's free pages fell under half its pfmemalloc reserve (the sum of the min watermarks);
# 3.6 and later. Not a page count, so never summed with pgscan_direct (vmcounters.py).
PGSCAN_DIRECT_THROTTLE = vm("pgscan_direct_throttle", zoned=False, since="Linux 3.6 and later")
# node reclaim (zone_reclaim_mode): node_reclaim() counts PGSCAN_ZONE_RECLAIM_FAILED when
# __node_reclaim() freed too little ("pgscan_zone_reclaim_failed" in its first kernels), and
# PGSCAN_ZONE_RECLAIM_SUCCESS on recent ones; only with CONFIG_NUMA.
NODE_RECLAIM_FAILED = vm("zone_reclaim_failed", "pgscan_zone_reclaim_failed", zoned=False,
                         since="NUMA kernels")
NODE_RECLAIM_SUCCESS = vm("zone_reclaim_success", zoned=False,
                          since="NUMA kernels of the 6.x series and later")
COMPACT_SUCCESS = vm("compact_success", zoned=False, since="CONFIG_COMPACTION")
KSWAPD_STEAL = vm("kswapd_steal", zoned=False, since="before Linux 3.4")
# memory cgroups: the harm a group at its limit may show
CG_ACTIVATE_FILE = cg("workingset_activate_file", "workingset_activate",
                      "total_workingset_activate")
CG_PGMAJFAULT = cg("pgmajfault", "total_pgmajfault")
