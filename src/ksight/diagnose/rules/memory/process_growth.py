"""Processes that grow: memory.leak-suspect, memory.vma-growth, memory.virtual-leak."""
