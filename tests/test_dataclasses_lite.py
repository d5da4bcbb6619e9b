"""ksight._dataclasses.dataclass behaves as dataclasses.dataclass: the same class built both ways
gives the same repr, equality, hash, frozenness, fields, replace, pickling and docstring shape."""

from __future__ import annotations

import dataclasses
import pickle
from dataclasses import FrozenInstanceError, field

import pytest

from ksight._dataclasses import dataclass as lite


def _pair(body: dict, **kw):
    """The same class made by the standard decorator and by the lite one."""
    out = []
    for deco in (dataclasses.dataclass, lite):
        ns = {"__module__": __name__, "__qualname__": "C",
              "__annotations__": dict(body.get("__annotations__", {}))}
        ns.update({k: v for k, v in body.items() if k != "__annotations__"})
        out.append(deco(**kw)(type("C", (), ns)))
    return out


BODY = {"__annotations__": {"a": "int", "b": "list", "c": "str", "d": "float"},
        "b": field(default_factory=list), "c": field(default="x", repr=False, compare=False),
        "d": 0.0}


@pytest.mark.parametrize("kw", [{}, {"frozen": True}, {"frozen": True, "kw_only": True},
                                {"frozen": True, "eq": False}])
def test_same_behaviour_as_the_standard_decorator(kw):
    std, mine = _pair(BODY, **kw)
    args = {"a": 1, "b": [2], "c": "y", "d": float("nan")}
    s, m = std(**args), mine(**args)
    assert repr(s) == repr(m) == "C(a=1, b=[2], d=nan)"
    assert [f.name for f in dataclasses.fields(m)] == ["a", "b", "c", "d"]
    assert m.__match_args__ == s.__match_args__
    assert dataclasses.asdict(m) == dataclasses.asdict(s)
    for cls, x in ((std, s), (mine, m)):
        same = cls(**dict(args, c="other"))  # c is not compared
        differ = cls(**dict(args, a=2))
        nan_twin = cls(**dict(args, d=x.d))  # the same nan object: tuples compare by identity first
        if kw.get("eq", True):
            assert x == nan_twin and x != differ
            assert (x == cls(**dict(args, d=float("nan")))) is False  # another nan: not equal, in both
        else:
            assert x != nan_twin and x == x
        assert (x == (1,)) is False
        hashable = kw.get("frozen") or not kw.get("eq", True)
        if kw.get("frozen") and kw.get("eq", True):
            with pytest.raises(TypeError):  # b is a list: unhashable, in both
                hash(x)
            assert hash(cls(**dict(args, b=()))) == hash(cls(**dict(args, b=(), c="z")))
        elif not hashable:
            with pytest.raises(TypeError):
                hash(x)
        if kw.get("frozen"):
            with pytest.raises(FrozenInstanceError):
                x.a = 5
            with pytest.raises(FrozenInstanceError):
                del x.a
        del same
    assert dataclasses.replace(m, a=7).a == 7 and dataclasses.replace(m, a=7).b == [2]
    assert mine.__dataclass_params__.frozen == std.__dataclass_params__.frozen
    assert mine.__dataclass_params__.eq == std.__dataclass_params__.eq
    assert mine.__doc__.startswith("C(") and std.__doc__.startswith("C(")


@lite(frozen=True)
class Pickled:
    a: int
    b: tuple = ()


def test_pickles():
    x = Pickled(1, (2,))
    assert pickle.loads(pickle.dumps(x)) == x


def test_hash_equals_the_standard_one():
    std, mine = _pair({"__annotations__": {"a": "int", "b": "str", "c": "int"},
                       "c": field(default=0, compare=False)}, frozen=True)
    assert hash(std(1, "x", 5)) == hash(mine(1, "x", 9)) == hash((1, "x"))
    assert {mine(1, "x"): 1}[mine(1, "x", 3)] == 1


def test_methods_written_in_the_class_are_kept():
    class Base:
        def __repr__(self):
            return "mine"

        def __eq__(self, other):
            return True

        __hash__ = object.__hash__

    @lite(frozen=True)
    class C(Base):
        a: int = 0

        def __repr__(self):
            return "own"

        def __hash__(self):
            return 42

    assert repr(C()) == "own" and hash(C()) == 42 and C(1) != C(2)


def test_inherits_from_a_frozen_dataclass_and_recursion():
    @lite(frozen=True)
    class A:
        a: int

    @dataclasses.dataclass(frozen=True)
    class B(A):
        b: list

    @lite(frozen=True)
    class D(B):
        d: int = 0

    x = D(1, [], 2)
    x.b.append(x)
    assert repr(x) == "test_inherits_from_a_frozen_dataclass_and_recursion.<locals>.D(a=1, b=[...], d=2)"
    assert D(1, [], 2) == D(1, [], 2) and D(1, [], 2) != B(1, [])
    with pytest.raises(TypeError):  # a non-frozen dataclass on a frozen one: refused, as before
        lite(type("E", (A,), {"__annotations__": {"e": "int"}, "__module__": __name__}))


def test_other_options_go_to_the_standard_decorator():
    @lite(order=True, frozen=True)
    class C:
        a: int

    assert C(1) < C(2)


def test_init_as_the_standard_one_writes_it():
    """__init__ is compiled at the first instance, and behaves as the standard decorator's:
    positional and keyword-only parameters, defaults, factories (a new object each time),
    init=False fields, __post_init__, a field named self."""
    body = {"__annotations__": {"self": "int", "a": "list", "b": "int", "c": "list", "d": "int",
                                "e": "int"},
            "a": field(default_factory=list), "b": 3, "c": field(default_factory=list, init=False),
            "d": field(default=9, init=False), "e": field(default=1, kw_only=True)}

    def post(obj):
        object.__setattr__(obj, "seen", (obj.self, obj.b))

    body["__post_init__"] = post
    for kw in ({}, {"frozen": True}):
        std, mine = _pair(body, **kw)
        stub = mine.__init__  # not compiled yet: compiled at the first instance
        for cls in (std, mine):
            x, y = cls(1), cls(2, [5], 4, e=7)
            assert (x.self, x.a, x.b, x.c, x.d, x.e, x.seen) == (1, [], 3, [], 9, 1, (1, 3))
            assert (y.self, y.a, y.b, y.e, y.seen) == (2, [5], 4, 7, (2, 4))
            assert x.a is not cls(1).a and x.c is not cls(1).c  # a fresh list per instance
            with pytest.raises(TypeError):
                cls(1, [], 2, 3)  # e is keyword-only
            with pytest.raises(TypeError):
                cls()  # self has no default
            with pytest.raises(TypeError):
                cls(1, d=2)  # d is not an __init__ parameter
        compiled = mine.__init__
        assert compiled is not stub and compiled.__qualname__ == "C.__init__"
        assert mine(1).seen == (1, 3) and mine.__init__ is compiled  # compiled once, then kept


def test_definition_errors_stay_at_definition():
    with pytest.raises(TypeError, match="non-default argument 'b' follows default argument"):
        @lite(frozen=True)
        class Bad:
            a: int = 0
            b: int
    with pytest.raises(ValueError, match="mutable default"):
        @lite
        class Mutable:
            a: list = []


def test_a_plain_subclass_made_first_and_frozen_assignment():
    @lite(frozen=True)
    class A:
        a: int
        b: int = 2

    class Sub(A):  # not a dataclass: A's __init__, and its instances may set new attributes
        pass

    s = Sub(1)
    s.extra = 5
    assert (s.a, s.b, s.extra) == (1, 2, 5) and A(1) == A(1, 2)
    with pytest.raises(FrozenInstanceError):
        s.a = 3
    with pytest.raises(FrozenInstanceError):
        A(1).extra = 1  # A itself takes no attribute at all, as the standard one


def test_initvar_goes_to_the_standard_decorator():
    @lite(frozen=True)
    class C:
        a: int
        scale: dataclasses.InitVar[int] = 1

        def __post_init__(self, scale):
            object.__setattr__(self, "a", self.a * scale)

    assert C(2, 3).a == 6 and [f.name for f in dataclasses.fields(C)] == ["a"]


@pytest.mark.parametrize("frozen", [True, False])
def test_classes_of_one_shape_share_compiled_code_not_names_or_defaults(frozen):
    import ksight._dataclasses as impl

    made = []
    for names, dflt in ((("x", "y", "z"), 1), (("alpha", "beta", "gamma"), "b"),
                        (("p", "q", "r"), None)):
        ns = {"__module__": __name__, "__qualname__": "S", "__annotations__": dict.fromkeys(names, "int"),
              names[1]: dflt, names[2]: field(default_factory=list, kw_only=True)}
        made.append(lite(frozen=frozen)(type("S", (), ns)))
    before = len(impl._TEMPLATES)
    objs = [cls(10) for cls in made]
    assert len(impl._TEMPLATES) <= before + 1  # one shape: compiled once at most
    (a, b, c) = objs
    assert (a.x, a.y, a.z) == (10, 1, []) and (b.alpha, b.beta, b.gamma) == (10, "b", [])
    assert (c.p, c.q, c.r) == (10, None, []) and a.z is not made[0](1).z
    assert made[1](1, "B", gamma=[3]).gamma == [3]
    with pytest.raises(TypeError):
        made[0](1, 2, 3)  # the factory field is keyword-only, in every class of the shape
    if frozen:
        with pytest.raises(FrozenInstanceError):
            b.alpha = 3
    assert not hasattr(a, "alpha") and not hasattr(b, "x")  # each class its own names
    assert [c.__init__.__code__.co_varnames[:3] for c in made] == [
        ("self", "x", "y"), ("self", "alpha", "beta"), ("self", "p", "q")]
    assert made[0].__init__.__qualname__ == "S.__init__" and made[0].__init__.__module__ == __name__
