"""The shared argument checks: one place, one wording.

Every check takes the parameter's name first and the value second, returns the value
in its canonical form (``int``, ``float``, ``numpy.dtype``, an array) and raises an
error whose message names the parameter and shows the bad value. A value of the wrong
type raises :class:`ArgumentTypeError`, which is both a ``TypeError`` and a
``ValueError``, so callers may catch either; a value of the right type that is out of
range raises ``ValueError``. No check modifies or keeps the caller's arrays.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

import numpy as np

__all__ = [
    "FLOAT_DTYPES",
    "ArgumentTypeError",
    "boolean",
    "finite_array",
    "finite_number",
    "float_dtype",
    "index_array",
    "instance_of",
    "non_negative_int",
    "one_of",
    "optional_positive_int",
    "positive_int",
    "stop_time",
    "thread_count",
    "time_step",
]

#: The floating-point dtypes the solvers compute in.
FLOAT_DTYPES = (np.dtype(np.float64), np.dtype(np.float32))


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type (catchable as ``TypeError`` or ``ValueError``)."""


def _is_integer(value) -> bool:
    # bool is an int to Python but never a count here; numpy integers are accepted.
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def positive_int(name: str, value) -> int:
    """``value`` as an ``int`` >= 1; ``ArgumentTypeError`` for a non-integer (2.5, True, "4")."""
    if not _is_integer(value):
        raise ArgumentTypeError(f"{name} must be a positive integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def optional_positive_int(name: str, value) -> int | None:
    """``None`` as is, else :func:`positive_int`."""
    return None if value is None else positive_int(name, value)


def non_negative_int(name: str, value) -> int:
    """``value`` as an ``int`` >= 0 (a count, an index, a seed)."""
    if not _is_integer(value):
        raise ArgumentTypeError(f"{name} must be a non-negative integer, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def thread_count(name: str, value) -> int:
    """A number of threads or lanes: a positive integer."""
    return positive_int(name, value)


def finite_number(
    name: str, value, *, positive: bool = False, non_negative: bool = False, unit: str = ""
) -> float:
    """``value`` as a finite ``float``, optionally > 0 or >= 0.

    Parameters
    ----------
    name : str
        The parameter, as the caller spells it.
    value : real number
        Python or numpy numbers; a bool or a string is refused.
    positive, non_negative : bool
        Require ``value > 0`` or ``value >= 0``.
    unit : str
        Said in the message ("ms", "µm"), so that the caller knows what is expected.
    """
    what = "positive" if positive else "non-negative" if non_negative else "finite"
    expected = f"{name} must be a {what} number" + (f" of {unit}" if unit else "")
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ArgumentTypeError(f"{expected}, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or (positive and number <= 0) or (non_negative and number < 0):
        raise ValueError(f"{expected}, got {value!r}")
    return number


def time_step(name: str, value) -> float:
    """A time step in ms: finite and > 0."""
    return finite_number(name, value, positive=True, unit="ms")


def stop_time(name: str, value) -> float:
    """A stop time in ms: finite and >= 0."""
    return finite_number(name, value, non_negative=True, unit="ms")


def boolean(name: str, value) -> bool:
    """``True`` or ``False`` (also numpy's), nothing else: ``shadow="no"`` is an error."""
    if not isinstance(value, (bool, np.bool_)):
        raise ArgumentTypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def one_of(name: str, value, choices: Iterable):
    """``value`` if it is one of ``choices``, else ValueError listing them."""
    choices = tuple(choices)
    try:
        known = value in choices
    except TypeError:  # an unhashable or incomparable value
        known = False
    if not known:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def float_dtype(name: str, value) -> np.dtype:
    """``numpy.float64`` or ``numpy.float32`` (any spelling numpy accepts) as a dtype."""
    try:
        dtype = np.dtype(value)
    except TypeError:
        raise ArgumentTypeError(f"{name} must be float64 or float32, got {value!r}") from None
    if dtype not in FLOAT_DTYPES:
        raise ValueError(f"{name} must be float64 or float32, got {dtype}")
    return dtype


def instance_of(name: str, value, types: type | tuple[type, ...], what: str):
    """``value`` if it is an instance of ``types``; ``what`` names them in the message."""
    if not isinstance(value, types):
        raise ArgumentTypeError(f"{name} must be {what}, got {type(value).__name__}")
    return value


def finite_array(name: str, value, *, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """``value`` as a float64 array whose values are all finite.

    The caller's array is returned as is when it already is C-contiguous float64 (never
    written to here); anything else is converted to a new array.

    Raises
    ------
    ValueError
        On a wrong ``shape``, or naming the first non-finite entry and the count.
    """
    try:
        array = np.asarray(value, dtype=np.float64, order="C")
    except (TypeError, ValueError):
        raise ArgumentTypeError(f"{name} must be an array of real numbers") from None
    if shape is not None and array.shape != tuple(shape):
        raise ValueError(f"{name} has shape {array.shape}, expected {tuple(shape)}")
    bad = ~np.isfinite(array)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        where = f"{name}[{', '.join(map(str, first))}]" if first else name
        raise ValueError(
            f"{where} is {array[first]} (not finite); {int(bad.sum())} non-finite value(s) in "
            f"{name}"
        )
    return array


def index_array(name: str, value, size: int) -> np.ndarray:
    """``value`` as a 1-D int64 array of indices into something of ``size`` entries.

    Raises
    ------
    ArgumentTypeError
        For non-integer entries (1.5, True) or an object that is no array.
    ValueError
        When it is not 1-D, or naming the first index outside ``0..size - 1``.
    """
    array = np.asarray(value)
    if array.size == 0 and array.dtype == np.float64:  # np.asarray([]) is float64
        array = array.astype(np.int64)
    if not (np.issubdtype(array.dtype, np.integer) and array.dtype != np.bool_):
        raise ArgumentTypeError(f"{name} must hold integer indices, got dtype {array.dtype}")
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    outside = np.flatnonzero((array < 0) | (array >= size))
    if outside.size:
        position = int(outside[0])
        raise ValueError(
            f"{name}[{position}] is {int(array[position])}, outside 0..{size - 1}"
            + (f" ({outside.size} indices out of range)" if outside.size > 1 else "")
        )
    return array.astype(np.int64, copy=False)
