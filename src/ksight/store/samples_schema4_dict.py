"""The zstd dictionary of sample schema 4 (store/samples_schema.py: frozen, never edit): schema 3's.

Schema 4 adds the socket summary's fields (owner netns, CLOSE_WAIT ages and peers, listeners'
SYN_RECV, destinations, other namespaces' counters) to schema 3's classes, with the same
vocabulary; the dictionary trained for schema 3 (samples_schema3_dict.py) serves it unchanged,
so it is not stored twice. Its SHA-256 is checked on load like any schema's.
"""

from .samples_schema3_dict import DATA

__all__ = ["DATA"]
