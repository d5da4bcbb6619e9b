"""`dataclass`, the standard one made cheaper to define: ksight's start-up defines ~120 of them.

The standard decorator compiles up to six methods per class from source text (__init__,
__repr__, __eq__, __hash__, __setattr__, __delattr__: one `exec` each, ~60-140 us apiece) and,
for a class without a docstring, builds one from inspect.signature. That was half of the CPU
`ksight check` spends importing (issue 7: 39 ms of 78 in 392 compiled methods). This drop-in lets
the standard decorator do the fields (defaults, default factories, kw_only, ClassVar, mutable
default checks) and __match_args__, so `dataclasses.fields`, `replace`, `asdict`, pickling and the
sample codec see a real dataclass, and then:
- __repr__, __eq__, __hash__, and a frozen class's __setattr__/__delattr__ are shared closures over
  the class's field names, not compiled per class: the same results (the same tuples compared and
  hashed, the same repr and its '...' on recursion, FrozenInstanceError on assignment);
- __init__ is compiled the first time the class is instantiated, from the same text the standard
  decorator writes: a run pays only for the classes it makes (a `check` makes about half of them).
  Argument errors (a non-default field after a default one) are still raised at definition.

Only the options ksight uses are taken here (frozen, eq, kw_only, repr); any other, an InitVar,
or a dataclass base (whose frozenness rules the standard decorator checks) goes to the standard
decorator untouched.
"""

from __future__ import annotations

import dataclasses
from operator import attrgetter
from _thread import get_ident

__all__ = ["dataclass"]

_OPTIONS = {"frozen", "eq", "kw_only", "repr"}


def dataclass(cls=None, /, **kw):
    """dataclasses.dataclass, with no method compiled at definition."""
    if set(kw) - _OPTIONS:
        return dataclasses.dataclass(cls, **kw) if cls is not None else dataclasses.dataclass(**kw)

    def wrap(c):
        return _process(c, frozen=kw.get("frozen", False), eq=kw.get("eq", True),
                        kw_only=kw.get("kw_only", False), repr_=kw.get("repr", True))

    return wrap if cls is None else wrap(cls)


def _standard(cls, *, frozen: bool, eq: bool, kw_only: bool, repr_: bool) -> bool:
    """True when the class must take the standard decorator (what this one does not model)."""
    if any(hasattr(b, "__dataclass_fields__") for b in cls.__mro__[1:]):
        return True  # inherited fields and the frozen/non-frozen inheritance rules
    body = cls.__dict__
    if frozen and ("__setattr__" in body or "__delattr__" in body):
        return True  # the standard decorator refuses these with its own message
    # an InitVar (told by its annotation, as text or as the type): __init__ takes it, no field
    # holds it; rare enough to leave to the standard decorator
    return any("InitVar" in (a if isinstance(a, str) else repr(a))
               for a in body.get("__annotations__", {}).values())


def _process(cls, *, frozen: bool, eq: bool, kw_only: bool, repr_: bool):
    if _standard(cls, frozen=frozen, eq=eq, kw_only=kw_only, repr_=repr_):
        return dataclasses.dataclass(cls, frozen=frozen, eq=eq, kw_only=kw_only, repr=repr_)
    body = cls.__dict__
    # what the standard decorator decides from the class body, before anything is added to it
    class_hash = body.get("__hash__", dataclasses.MISSING)
    explicit_hash = not (class_hash is dataclasses.MISSING
                         or (class_hash is None and "__eq__" in body))
    own_repr, own_eq, own_init = "__repr__" in body, "__eq__" in body, "__init__" in body
    no_doc = not body.get("__doc__")
    if no_doc:
        cls.__doc__ = "-"  # keeps the standard decorator from calling inspect.signature
    # fields only: nothing compiled (init, repr, eq, frozen are done below)
    cls = dataclasses.dataclass(cls, init=False, repr=False, eq=False, frozen=False,
                                kw_only=kw_only)
    fields = dataclasses.fields(cls)  # the instance fields (no ClassVar)
    if no_doc:
        cls.__doc__ = f"{cls.__name__}({', '.join(f.name for f in fields if f.init)})"
    params = cls.__dataclass_params__
    params.init, params.repr, params.eq, params.frozen = True, repr_, eq, frozen
    if not own_init:
        _check_order(fields)
        cls.__init__ = _lazy_init(cls, fields, frozen)
    if repr_ and not own_repr:
        _method(cls, "__repr__", _repr_fn(tuple(f.name for f in fields if f.repr)))
    if frozen:
        names = frozenset(f.name for f in fields)
        _method(cls, "__setattr__", _frozen_setattr(cls, names))
        _method(cls, "__delattr__", _frozen_delattr(cls, names))
    if eq:
        key = _key(tuple(f.name for f in fields if f.compare))
        if not own_eq:
            _method(cls, "__eq__", _eq_fn(key))
        if not explicit_hash:
            if frozen:  # hash of the fields compared (hash=None) or marked hash=True
                _method(cls, "__hash__", _hash_fn(_key(tuple(
                    f.name for f in fields if (f.compare if f.hash is None else f.hash)))))
            else:  # eq without frozen: unhashable, as the standard decorator makes it
                cls.__hash__ = None
    return cls


def _method(cls, name: str, fn) -> None:
    fn.__qualname__ = f"{cls.__qualname__}.{name}"
    setattr(cls, name, fn)


def _check_order(fields) -> None:
    """The standard decorator's definition-time check: no positional field without a default
    after one with a default."""
    seen_default = False
    for f in fields:
        if not f.init or f.kw_only:
            continue
        has = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        if has:
            seen_default = True
        elif seen_default:
            raise TypeError(f"non-default argument {f.name!r} follows default argument")


class _Factory:
    """The default of a parameter whose field has a default factory (the standard decorator's
    _HAS_DEFAULT_FACTORY, which is private)."""

    def __repr__(self):
        return "<factory>"


_FACTORY = _Factory()


def _init_source(cls, fields, frozen: bool) -> tuple[str, dict]:
    """The text of __init__ as the standard decorator writes it (dataclasses._init_fn), and the
    names it uses."""
    missing = dataclasses.MISSING
    names = {f.name for f in fields}
    self_name = "__dataclass_self__" if "self" in names else "self"
    glob = {"__ks_factory__": _FACTORY, "__ks_set__": object.__setattr__}
    pos, kwo, body = [], [], []
    for f in fields:
        dflt = f"__ks_dflt_{f.name}__"
        if f.init:
            if f.default_factory is not missing:
                glob[dflt] = f.default_factory
                param = f"{f.name}=__ks_factory__"
                value = f"{dflt}() if {f.name} is __ks_factory__ else {f.name}"
            elif f.default is not missing:
                glob[dflt] = f.default
                param, value = f"{f.name}={dflt}", f.name
            else:
                param, value = f.name, f.name
            (kwo if f.kw_only else pos).append(param)
        elif f.default_factory is not missing:
            glob[dflt] = f.default_factory
            value = f"{dflt}()"
        else:
            continue  # the class attribute holds the default
        if frozen:
            body.append(f"  __ks_set__({self_name}, {f.name!r}, {value})")
        else:
            body.append(f"  {self_name}.{f.name} = {value}")
    if hasattr(cls, "__post_init__"):
        body.append(f"  {self_name}.__post_init__()")
    params = [self_name] + pos + (["*"] + kwo if kwo else [])
    text = f"def __init__({', '.join(params)}):\n" + ("\n".join(body) or "  pass") + "\n"
    return text, glob


class _Placeholder:
    """A field seen through its shape only: its name is its position (_ks0_, _ks1_, ...)."""

    __slots__ = ("name", "init", "kw_only", "default", "default_factory")

    def __init__(self, i: int, f):
        self.name = f"_ks{i}_"
        self.init, self.kw_only = f.init, f.kw_only
        self.default, self.default_factory = f.default, f.default_factory


# shape of a class's __init__ -> its code, with the fields named by position; a class of that
# shape gets the code with its own names (code.replace: no compile). ksight's ~120 dataclasses
# have a few dozen shapes: most are n plain fields, frozen.
_TEMPLATES: dict[tuple, object] = {}


def _shape(fields, frozen: bool, post_init: bool) -> tuple:
    missing = dataclasses.MISSING
    # a default is the function's, not its code's: fields with and without one share a shape
    return (frozen, post_init) + tuple(
        (f.init, f.kw_only, f.default_factory is not missing) for f in fields)


def _compile_init(cls, fields, frozen: bool):
    """cls.__init__: the standard decorator's text, compiled once per shape of class."""
    import types

    names = [f.name for f in fields]
    if "self" in names or any(n.startswith("_ks") for n in names):
        return _compile_text(cls, fields, frozen)  # the placeholders would clash: compile it
    post_init = hasattr(cls, "__post_init__")
    key = _shape(fields, frozen, post_init)
    code = _TEMPLATES.get(key)
    if code is None:
        holders = [_Placeholder(i, f) for i, f in enumerate(fields)]
        code = _TEMPLATES[key] = _compile_text(cls, holders, frozen).__code__
    real = {f"_ks{i}_": n for i, n in enumerate(names)}
    code = code.replace(
        co_varnames=tuple(real.get(v, v) for v in code.co_varnames),
        co_names=tuple(real.get(v, v) for v in code.co_names),
        co_consts=tuple(real.get(c, c) if type(c) is str else c for c in code.co_consts),
        co_qualname=f"{cls.__qualname__}.__init__")
    missing = dataclasses.MISSING
    glob = {"__ks_factory__": _FACTORY, "__ks_set__": object.__setattr__,
            "__name__": cls.__module__}
    defaults, kwdefaults = [], {}
    for i, f in enumerate(fields):
        if f.default_factory is not missing:
            glob[f"__ks_dflt__ks{i}___"] = f.default_factory
        if not f.init:
            continue
        if f.default_factory is not missing:
            d = _FACTORY
        elif f.default is not missing:
            d = f.default
        else:
            continue
        if f.kw_only:
            kwdefaults[f.name] = d
        else:
            defaults.append(d)
    fn = types.FunctionType(code, glob, "__init__", tuple(defaults) or None)
    fn.__kwdefaults__ = kwdefaults or None
    fn.__qualname__ = f"{cls.__qualname__}.__init__"
    return fn


def _compile_text(cls, fields, frozen: bool):
    text, glob = _init_source(cls, fields, frozen)
    glob["__name__"] = cls.__module__
    ns: dict = {}
    exec(text, glob, ns)  # noqa: S102 - our own text, from field names the class declares
    fn = ns["__init__"]
    fn.__qualname__ = f"{cls.__qualname__}.__init__"
    return fn


def _lazy_init(cls, fields, frozen: bool):
    def __init__(self, *args, **kwargs):
        real = _compile_init(cls, fields, frozen)
        cls.__init__ = real  # every later instance calls the compiled one directly
        real(self, *args, **kwargs)

    return __init__


def _frozen_setattr(cls, names: frozenset):
    def __setattr__(self, name, value):
        if type(self) is cls or name in names:
            raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")
        super(cls, self).__setattr__(name, value)

    return __setattr__


def _frozen_delattr(cls, names: frozenset):
    def __delattr__(self, name):
        if type(self) is cls or name in names:
            raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")
        super(cls, self).__delattr__(name)

    return __delattr__


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
