"""The snapshot model: what one look at the kernel holds (Snapshot) and what two looks
mean together (Window: deltas and rates, computed in one place for every view)."""

from .snapshot import HostInfo, Missing, Snapshot
from .rates import Delta, Window, counter_delta, lookup

__all__ = ["HostInfo", "Missing", "Snapshot", "Delta", "Window", "counter_delta", "lookup"]
