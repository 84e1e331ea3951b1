"""Configuration declared one way: dataclasses whose fields carry their checks.

A configuration class is a plain :func:`dataclasses.dataclass` (``asdict``, ``replace``,
``fields``, ``kw_only`` and ``ClassVar`` work as ever, and building one checks nothing) that
subclasses :class:`Checked`. Its fields declare their constraints with pydantic
(``epochs: Annotated[int, Field(ge=1)]``, :data:`Count`, ``loss: Literal[LOSSES]``) and its
cross-field rules are pydantic validators (``@model_validator(mode="after")``) that raise
:class:`~lgemri.errors.InputError` in their own words. :meth:`Checked.validate` checks the whole
object, writes the normalised values back (JSON's lists become tuples, numbers floats) and turns
the first failure into an :class:`~lgemri.errors.InputError` that names the setting
(``Field(title=...)``, else the field name in words) and the problem: "epochs must be at least 1,
got 0", "unknown loss 'x'; choose from ce, ce+dice". A class checked when it is built calls
``self.validate()`` from ``__post_init__``.

Torch-free.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import typing
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from .errors import InputError

__all__ = ["Checked", "Count", "NonNegativeInt", "Positive", "NonNegative", "Share", "Rate"]

#: A whole number of at least 1.
Count = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
#: A finite number above 0.
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
#: A share in 0-1.
Share = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
#: A probability or factor in [0, 1) (dropout, Adam's beta1).
Rate = Annotated[float, Field(ge=0, lt=1)]

_BOUNDS = {"greater_than_equal": "ge", "greater_than": "gt", "less_than_equal": "le", "less_than": "lt"}
_WORDS = {"ge": "at least", "gt": "above", "le": "at most", "lt": "below"}
_TYPES = {"int": "a whole number", "float": "a number", "bool": "true or false", "string": "text"}
_checking: contextvars.ContextVar[frozenset] = contextvars.ContextVar("_checking", default=frozenset())


class Checked:
    """Base of the configuration classes: :meth:`validate` checks the declared fields."""

    def validate(self) -> None:
        """Check every setting and normalise them in place.

        Raises:
            InputError: The first bad setting, named, and what is wrong with it.
        """
        cls = type(self)
        if cls in _checking.get():  # the checked copy pydantic builds runs __post_init__ too
            return
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
        token = _checking.set(_checking.get() | {cls})
        try:
            checked = _adapter(cls).validate_python(values)
        except ValidationError as exc:
            raise _input_error(exc.errors()[0], cls) from None
        finally:
            _checking.reset(token)
        for name in values:
            object.__setattr__(self, name, getattr(checked, name))


@functools.cache
def _adapter(cls: type) -> TypeAdapter:
    return TypeAdapter(cls)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def _metadata(hint: Any):
    """What a field's type holds: its types, ``Field`` infos and their constraints, outermost first."""
    for item in typing.get_args(hint):
        yield item
        yield from getattr(item, "metadata", ())
        yield from _metadata(item)


def _label(cls: type, name: Any) -> str:
    titles = (m.title for m in _metadata(_hints(cls).get(name)) if isinstance(m, FieldInfo) and m.title)
    return next(titles, str(name).replace("_", " "))


def _choices(hint: Any) -> tuple:
    if typing.get_origin(hint) is Literal:
        return typing.get_args(hint)
    return tuple(v for arg in typing.get_args(hint) for v in _choices(arg))


def _bounds(hint: Any) -> dict[str, float]:
    """The bounds (``ge``, ``gt``, ``le``, ``lt``) a field's type declares."""
    found = {}
    for item in _metadata(hint):
        found.update({k: getattr(item, k) for k in _WORDS if isinstance(getattr(item, k, None), (int, float))})
    return found


def _in_words(bounds: dict[str, float]) -> str:
    """``{"gt": 0}`` as "positive", ``{"ge": 0, "le": 100}`` as "at least 0 and at most 100"."""
    if bounds in ({"gt": 0}, {"ge": 0}):
        return "positive" if "gt" in bounds else "non-negative"
    return " and ".join(f"{words} {bounds[k]:g}" for k, words in _WORDS.items() if k in bounds)


def _input_error(error: Any, cls: type) -> InputError:
    """An error of pydantic's in words: the setting, what it must be and what it was."""
    kind, value, ctx = error["type"], error["input"], error.get("ctx") or {}
    if isinstance(ctx.get("error"), InputError):
        return ctx["error"]  # a validator's own message
    if kind == "value_error":
        return InputError(str(ctx["error"]))
    name = error["loc"][0] if error["loc"] else ""
    label = _label(cls, name) if len(error["loc"]) < 2 else f"every value of {_label(cls, name)}"
    if kind == "literal_error":
        label = _label(cls, name)
        choices = ", ".join(map(str, _choices(_hints(cls).get(name))))
        return InputError(f"unknown {label} {value!r}; choose from {choices}")
    if kind in _BOUNDS:
        key = _BOUNDS[kind]
        bounds = _bounds(_hints(cls).get(name))
        return InputError(f"{label} must be {_in_words(bounds if key in bounds else {key: ctx[key]})}, got {value}")
    if kind == "finite_number":
        return InputError(f"{label} must be a finite number, got {value}")
    if kind in ("too_short", "too_long"):
        bound = f"at least {ctx['min_length']}" if kind == "too_short" else f"at most {ctx['max_length']}"
        return InputError(f"{label} must have {bound} value(s), got {value!r}")
    what = _TYPES.get(kind.split("_")[0])
    if what:
        return InputError(f"{label} must be {what}, got {value!r}")
    return InputError(f"{label}: {error['msg'][:1].lower()}{error['msg'][1:]}, got {value!r}")
