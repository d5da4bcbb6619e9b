"""Collectors: turn a Root into Snapshots (system sources, processes, sockets)."""
