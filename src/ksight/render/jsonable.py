"""Turn model objects (dataclasses, mappings, tuples) into plain JSON-ready values."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

_FIELDS: dict[type, tuple[str, ...] | None] = {}  # class -> dataclass field names (None: not one)


def _field_names(cls: type) -> tuple[str, ...] | None:
    names = _FIELDS.get(cls, False)
    if names is False:
        # a field declared with metadata={"json": False} (raw text kept for lookups) is left out
        names = (tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("json", True))
                 if dataclasses.is_dataclass(cls) else None)
        _FIELDS[cls] = names
    return names


def jsonable(obj: Any) -> Any:
    cls = type(obj)
    if obj is None or cls is int or cls is str or cls is bool:
        return obj
    if cls is dict:
        return {str(k): jsonable(v) for k, v in obj.items()}
    if cls is tuple or cls is list:
        return [jsonable(v) for v in obj]
    names = _field_names(cls)
    if names is not None:  # a dataclass instance (field names cached per class)
        return {n: jsonable(getattr(obj, n)) for n in names}
    if isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, bytes):
        return obj.decode("utf-8", errors="replace")
    return str(obj)
