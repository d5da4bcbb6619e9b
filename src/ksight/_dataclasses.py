"""`dataclass`, the standard one made cheaper to define: ksight's start-up defines ~110 of them.

The standard decorator compiles up to six methods per class from source text (__init__,
__repr__, __eq__, __hash__, __setattr__, __delattr__: one `exec` each, ~60-140 us apiece) and,
for a class without a docstring, builds one from inspect.signature. That was a third of
`ksight check`'s start-up (issue 7). This drop-in lets the standard decorator do the fields,
defaults, __init__, frozenness and __match_args__ (so `dataclasses.fields`, `replace`, `asdict`,
pickling and the sample codec see a real dataclass), and gives __repr__, __eq__ and __hash__ as
shared closures over the class's field names instead of compiled text: the same results (same
tuples compared and hashed, the same repr and its '...' on recursion), not compiled per class.

Only the options ksight uses are taken here (frozen, eq, kw_only, repr); any other goes to the
standard decorator untouched.
"""

from __future__ import annotations

import dataclasses
from operator import attrgetter
from _thread import get_ident

__all__ = ["dataclass"]

_OPTIONS = {"frozen", "eq", "kw_only", "repr"}


def dataclass(cls=None, /, **kw):
    """dataclasses.dataclass, with __repr__, __eq__ and __hash__ not compiled per class."""
    if set(kw) - _OPTIONS:
        return dataclasses.dataclass(cls, **kw) if cls is not None else dataclasses.dataclass(**kw)

    def wrap(c):
        return _process(c, frozen=kw.get("frozen", False), eq=kw.get("eq", True),
                        kw_only=kw.get("kw_only", False), repr_=kw.get("repr", True))

    return wrap if cls is None else wrap(cls)


def _process(cls, *, frozen: bool, eq: bool, kw_only: bool, repr_: bool):
    body = cls.__dict__
    # what the standard decorator decides from the class body, before anything is added to it
    class_hash = body.get("__hash__", dataclasses.MISSING)
    explicit_hash = not (class_hash is dataclasses.MISSING
                         or (class_hash is None and "__eq__" in body))
    own_repr, own_eq = "__repr__" in body, "__eq__" in body
    no_doc = not body.get("__doc__")
    if no_doc:
        cls.__doc__ = "-"  # keeps the standard decorator from calling inspect.signature
    cls = dataclasses.dataclass(cls, repr=False, eq=False, frozen=frozen, kw_only=kw_only)
    fields = dataclasses.fields(cls)  # the instance fields (no ClassVar, no InitVar)
    if no_doc:
        cls.__doc__ = f"{cls.__name__}({', '.join(f.name for f in fields if f.init)})"
    params = cls.__dataclass_params__
    params.repr, params.eq = repr_, eq  # as the standard decorator would record them
    if repr_ and not own_repr:
        cls.__repr__ = _repr_fn(tuple(f.name for f in fields if f.repr))
        cls.__repr__.__qualname__ = f"{cls.__qualname__}.__repr__"
    if eq:
        key = _key(tuple(f.name for f in fields if f.compare))
        if not own_eq:
            cls.__eq__ = _eq_fn(key)
            cls.__eq__.__qualname__ = f"{cls.__qualname__}.__eq__"
        if not explicit_hash:
            if frozen:  # hash of the fields compared (hash=None) or marked hash=True
                hkey = _key(tuple(f.name for f in fields
                                  if (f.compare if f.hash is None else f.hash)))
                cls.__hash__ = _hash_fn(hkey)
                cls.__hash__.__qualname__ = f"{cls.__qualname__}.__hash__"
            else:  # eq without frozen: unhashable, as the standard decorator makes it
                cls.__hash__ = None
    return cls


def _key(names: tuple[str, ...]):
    """obj -> the tuple of its named fields (the tuple the compiled __eq__/__hash__ build)."""
    if not names:
        return lambda obj: ()
    if len(names) == 1:
        one = attrgetter(names[0])
        return lambda obj: (one(obj),)
    return attrgetter(*names)


def _eq_fn(key):
    def __eq__(self, other):
        if other.__class__ is self.__class__:
            return key(self) == key(other)
        return NotImplemented

    return __eq__


def _hash_fn(key):
    def __hash__(self):
        return hash(key(self))

    return __hash__


def _repr_fn(names: tuple[str, ...]):
    running: set = set()

    def __repr__(self):
        k = (id(self), get_ident())
        if k in running:
            return "..."
        running.add(k)
        try:
            return (self.__class__.__qualname__ + "("
                    + ", ".join(f"{n}={getattr(self, n)!r}" for n in names) + ")")
        finally:
            running.discard(k)

    return __repr__
