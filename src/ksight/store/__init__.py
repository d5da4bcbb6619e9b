"""Keeping kernel data for later: capture bundles (raw text + manifest) and recordings."""
