"""Page cache and disk I/O rules: reclaim, dirty pages, caches thrown away, swap.

One module per family of diagnoses; importing the package registers every rule. Rules read the
snapshot model only, through Context: counters by name (counters.py), judged per interval, so a
burst is seen at its peak. Dirty thresholds come from model.dirty, computed as the kernel does.
"""

from . import cache_loss, dirty, reclaim, swap  # noqa: F401  (registers the rules)
