"""One way to validate a setting: typed ranges and an error that names the field as data.

Every layer checks its settings with this module (``envs`` may import it: it imports nothing of
the project). A bad value raises :class:`InvalidValue`, a ``ValueError`` whose ``field``,
``value`` and ``expected`` say what was wrong, so a caller (the command line naming the flag of a
field) never reads them back from the message. The message is one line,
``invalid FIELD=VALUE: expected EXPECTED``, with a long value cut (:func:`shorten`).

- :func:`require`: ``InvalidValue`` when a condition is false (any check in one line).
- Typed ranges, each with ``expected`` (what it accepts, in words), ``accepts(value)`` and
  ``check(field, value)`` (the normalised value, or ``InvalidValue``): :class:`Int`,
  :class:`Real` (finite), :class:`Flag` (a bool), :class:`OneOf` (one of a few strings) and
  :class:`Custom` (a function that raises ``ValueError(expected)``).
- :func:`check_fields`: a dataclass's fields through their checks, in order, normalised in place
  (frozen dataclasses too).

By default the ranges take numpy scalars and refuse bools (``True`` is not the integer 1);
``numpy=False`` takes Python numbers only, and ``bools=True`` keeps what settings written before
this module accepted (``isinstance(True, int)``). ``text`` replaces the words of ``expected``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields
from typing import Any, Callable, Mapping, Protocol

import numpy as np

__all__ = ["MAX_QUOTED", "Checker", "Custom", "Flag", "Int", "InvalidInput", "InvalidPath",
           "InvalidValue", "OneOf", "Real", "check_fields", "field_checks", "require", "shorten"]

MAX_QUOTED = 80  # characters of a bad value quoted in an error message


def shorten(value: object, limit: int = MAX_QUOTED) -> str:
    """``repr(value)`` cut to ``limit`` characters, so an error never quotes a huge input."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit - 3]}... ({len(text):,} characters)"


# ---------------------------------------------------------------------- the error
class InvalidInput(Exception):
    """A bad value of a named setting, with the field as data.

    Attributes:
        field: the setting's name (a dataclass field, a function argument, a state field).
        value: the value refused.
        expected: what the setting accepts, in words (None where only ``reason`` says it).
        reason: the text after ``invalid FIELD=VALUE:`` (``expected ...`` unless given), or
            None when ``message`` replaced the whole message.
        quoted: ``shorten(value)``, as the message quotes it.

    ``message`` replaces the standard ``invalid FIELD=VALUE: REASON`` wording where a setting
    kept an older one.
    """

    def __init__(self, field: str, value: Any, expected: str | None = None, *,
                 reason: str | None = None, message: str | None = None) -> None:
        if expected is None and reason is None and message is None:
            raise TypeError("InvalidInput needs expected, reason or message")
        self.field, self.value, self.expected = field, value, expected
        self._init = {"expected": expected, "reason": reason, "message": message}
        self.quoted = shorten(value)
        if message is None:
            self.reason: str | None = reason if reason is not None else f"expected {expected}"
            message = f"invalid {field}={self.quoted}: {self.reason}"
        else:
            self.reason = None
        super().__init__(message)

    def __reduce__(self):  # pickled across processes (Ray, subprocess envs) with its data
        return _rebuild, (type(self), self.field, self.value, self._init)


def _rebuild(cls: type, field: str, value: Any, init: dict) -> InvalidInput:
    return cls(field, value, **init)


class InvalidValue(InvalidInput, ValueError):
    """A bad value (a ``ValueError``): see :class:`InvalidInput`."""


class InvalidPath(InvalidInput, OSError):
    """A path the file system refuses (an ``OSError``): see :class:`InvalidInput`."""


def require(ok: Any, field: str, value: Any, expected: str | None = None, *,
            reason: str | None = None, message: str | None = None) -> None:
    """Raise :class:`InvalidValue` naming ``field`` when ``ok`` is false."""
    if not ok:
        raise InvalidValue(field, value, expected, reason=reason, message=message)


# ---------------------------------------------------------------------- typed ranges
class Checker(Protocol):
    expected: str

    def accepts(self, value: Any) -> bool: ...

    def check(self, field: str, value: Any) -> Any: ...


def _bound(x: float | None) -> str:
    return "inf" if x is None else f"{x:g}" if isinstance(x, float) else str(x)


_BOOLS = (bool, np.bool_)


def _takes(value: Any, bools: bool, numpy: bool, kind: type, plain: type | tuple) -> bool:
    """Whether a range takes ``value``'s type: a bool only with ``bools`` (a numpy bool also
    needs ``numpy``); otherwise an instance of ``kind`` (a ``numbers`` ABC, numpy scalars
    included) with ``numpy``, of ``plain`` (Python's own types) without."""
    if isinstance(value, _BOOLS):
        return bools and (numpy or not isinstance(value, np.bool_))
    return isinstance(value, kind if numpy else plain)


@dataclass(frozen=True)
class Int:
    """An integer in ``[low, high]`` (``high`` None: unbounded); normalised to ``int``.

    ``numpy``: numpy integers count (else Python ints only); ``bools``: True and False count
    as 1 and 0 (as ``isinstance(True, int)`` says)."""

    low: int
    high: int | None = None
    numpy: bool = True
    bools: bool = False
    text: str | None = None

    @property
    def expected(self) -> str:
        if self.text is not None:
            return self.text
        if self.high is None:
            return f"an integer >= {self.low}"
        return f"an integer in [{self.low}, {self.high}]"

    def accepts(self, value: Any) -> bool:
        if not _takes(value, self.bools, self.numpy, numbers.Integral, int):
            return False
        return self.low <= value and (self.high is None or value <= self.high)

    def check(self, field: str, value: Any) -> int:
        require(self.accepts(value), field, value, self.expected)
        return int(value)


@dataclass(frozen=True)
class Real:
    """A finite real number in a range (``None``: unbounded on that side; ``open_*``: the bound
    itself is out); normalised to ``float``. ``numpy`` and ``bools`` as for :class:`Int`;
    without ``numpy``, ints and floats (numpy's float64 is one) only."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    numpy: bool = True
    bools: bool = False
    text: str | None = None

    @property
    def expected(self) -> str:
        if self.text is not None:
            return self.text
        if self.high is None:
            return f"a finite number {'>' if self.open_low else '>='} {_bound(self.low)}"
        lo, hi = "(" if self.open_low else "[", ")" if self.open_high else "]"
        return f"a number in {lo}{_bound(self.low)}, {_bound(self.high)}{hi}"

    def _float(self, value: Any) -> float:
        """``value`` as a float, NaN when it is not a number this range takes."""
        if not _takes(value, self.bools, self.numpy, numbers.Real, (int, float)):
            return math.nan
        try:
            return float(value)
        except OverflowError:  # an int beyond any float
            return math.nan

    def accepts(self, value: Any) -> bool:
        x = self._float(value)
        ok = math.isfinite(x)
        if ok and self.low is not None:
            ok = x > self.low if self.open_low else x >= self.low
        if ok and self.high is not None:
            ok = x < self.high if self.open_high else x <= self.high
        return ok

    def check(self, field: str, value: Any) -> float:
        require(self.accepts(value), field, value, self.expected)
        return float(value)


@dataclass(frozen=True)
class Flag:
    """``True`` or ``False`` (numpy booleans too unless ``numpy=False``); not 'no', 0 or None."""

    numpy: bool = True
    expected = "True or False"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, _BOOLS if self.numpy else bool)

    def check(self, field: str, value: Any) -> bool:
        require(self.accepts(value), field, value, self.expected)
        return bool(value)


@dataclass(frozen=True)
class OneOf:
    """One of a few strings."""

    choices: tuple[str, ...]
    text: str | None = None

    @property
    def expected(self) -> str:
        return self.text if self.text is not None else f"one of {self.choices}"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and value in self.choices

    def check(self, field: str, value: Any) -> str:
        require(self.accepts(value), field, value, self.expected)
        return value


@dataclass(frozen=True)
class Custom:
    """A check the ranges above do not express: ``validate(value)`` returns the normalised value
    or raises ``ValueError``/``TypeError`` whose text says what was expected."""

    validate: Callable[[Any], Any]

    def accepts(self, value: Any) -> bool:
        try:
            self.validate(value)
        except (TypeError, ValueError):
            return False
        return True

    def check(self, field: str, value: Any) -> Any:
        try:
            return self.validate(value)
        except (TypeError, ValueError) as err:
            raise InvalidValue(field, value, str(err)) from None


def check_fields(obj: Any, checks: Mapping[str, Checker], normalise: bool = True) -> None:
    """Check the fields of ``obj`` named in ``checks``, in that order (the first bad one
    raises); with ``normalise``, each is replaced by its checked value (frozen dataclasses
    too)."""
    for name, checker in checks.items():
        value = checker.check(name, getattr(obj, name))
        if normalise:
            object.__setattr__(obj, name, value)


def field_checks(cls: type) -> dict[str, Checker]:
    """The checks a dataclass's fields carry in their metadata (``metadata={"check": ...}``)."""
    return {f.name: f.metadata["check"] for f in fields(cls) if "check" in f.metadata}
