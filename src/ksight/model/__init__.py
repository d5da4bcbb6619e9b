"""The snapshot model: what one look at the kernel holds (Snapshot) and what a series of looks
means together (series.Series: deltas, rates, peaks and trends, computed in one place)."""

from .snapshot import HostInfo, Missing, Snapshot

__all__ = ["HostInfo", "Missing", "Snapshot"]
