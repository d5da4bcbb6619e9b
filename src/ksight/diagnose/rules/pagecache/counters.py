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
DROP_PAGECACHE = vm("drop_pagecache", since="Linux 4.15 and later")
DROP_SLAB = vm("drop_slab", since="Linux 4.15 and later")
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
