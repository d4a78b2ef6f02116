"""Tests of dhs.checks: what each shared check accepts, returns and refuses, and its words."""

from __future__ import annotations

import re

import numpy as np
import pytest

from dhs import checks
from dhs.checks import ArgumentTypeError


def _raises(error: type[BaseException], name: str, value_text: str):
    """The message names the parameter and shows the bad value."""
    return pytest.raises(error, match=rf"^{re.escape(name)}.*{re.escape(value_text)}")


def test_argument_type_error_is_both_type_and_value_error():
    assert issubclass(ArgumentTypeError, TypeError)
    assert issubclass(ArgumentTypeError, ValueError)


# ----------------------------------------------------------------------------- integers
@pytest.mark.parametrize("value", [1, 7, np.int32(3), np.int64(10**12)])
def test_positive_int_accepts(value):
    result = checks.positive_int("count", value)
    assert result == int(value) and type(result) is int


@pytest.mark.parametrize("value", [0, -1, np.int64(-5)])
def test_positive_int_refuses_out_of_range(value):
    with _raises(ValueError, "count must be a positive integer", repr(value)):
        checks.positive_int("count", value)


@pytest.mark.parametrize("value", [2.5, 4.0, np.float64(4.0), True, False, np.bool_(True), "4",
                                   None, [4]])  # fmt: skip
def test_positive_int_refuses_other_types(value):
    with _raises(ArgumentTypeError, "count must be a positive integer", repr(value)):
        checks.positive_int("count", value)


def test_optional_positive_int():
    assert checks.optional_positive_int("workers", None) is None
    assert checks.optional_positive_int("workers", 3) == 3
    with _raises(ValueError, "workers", "0"):
        checks.optional_positive_int("workers", 0)


@pytest.mark.parametrize("value", [0, 5, np.uint8(2)])
def test_non_negative_int_accepts(value):
    assert checks.non_negative_int("seed", value) == int(value)


@pytest.mark.parametrize(("value", "error"), [(-1, ValueError), (1.0, ArgumentTypeError),
                                              (True, ArgumentTypeError)])  # fmt: skip
def test_non_negative_int_refuses(value, error):
    with _raises(error, "seed must be a non-negative integer", repr(value)):
        checks.non_negative_int("seed", value)


@pytest.mark.parametrize("value", [0, -2, 1.5, True, "8"])
def test_thread_count_refuses(value):
    with pytest.raises(ValueError, match=r"threads must be a positive integer, got "):
        checks.thread_count("threads", value)


# ----------------------------------------------------------------------------- numbers
@pytest.mark.parametrize("value", [0.025, 1, np.float32(0.5), np.int64(2)])
def test_time_step_accepts(value):
    result = checks.time_step("dt", value)
    assert result == float(value) and type(result) is float


@pytest.mark.parametrize("value", [0.0, -0.025, float("nan"), float("inf")])
def test_time_step_refuses_values(value):
    with _raises(ValueError, "dt must be a positive number of ms", repr(value)):
        checks.time_step("dt", value)


@pytest.mark.parametrize("value", ["0.025", None, True, [0.025]])
def test_time_step_refuses_types(value):
    with _raises(ArgumentTypeError, "dt must be a positive number of ms", repr(value)):
        checks.time_step("dt", value)


def test_stop_time():
    assert checks.stop_time("tstop", 0) == 0.0
    assert checks.stop_time("tstop", 100.5) == 100.5
    for value in (-1.0, float("inf"), float("nan")):
        with _raises(ValueError, "tstop must be a non-negative number of ms", repr(value)):
            checks.stop_time("tstop", value)


def test_finite_number_variants():
    assert checks.finite_number("x", -3.5) == -3.5
    with _raises(ValueError, "x must be a finite number", "nan"):
        checks.finite_number("x", float("nan"))
    with _raises(ValueError, "length must be a non-negative number of µm", "-1.0"):
        checks.finite_number("length", -1.0, non_negative=True, unit="µm")
    with _raises(ValueError, "area must be a positive number", "0"):
        checks.finite_number("area", 0, positive=True)


# ----------------------------------------------------------------------------- others
@pytest.mark.parametrize("value", [True, False, np.bool_(False)])
def test_boolean_accepts(value):
    assert checks.boolean("shadow", value) is bool(value)


@pytest.mark.parametrize("value", [0, 1, "yes", None])
def test_boolean_refuses(value):
    with _raises(ArgumentTypeError, "shadow must be True or False", repr(value)):
        checks.boolean("shadow", value)


def test_one_of():
    assert checks.one_of("mode", "full", ("full", "few")) == "full"
    for value in ("FULL", None, ["full"], 3):
        with _raises(ValueError, "mode must be one of ('full', 'few')", repr(value)):
            checks.one_of("mode", value, ("full", "few"))


@pytest.mark.parametrize("value", [np.float64, np.float32, "float32", "f8", np.dtype("<f8")])
def test_float_dtype_accepts(value):
    assert checks.float_dtype("dtype", value) == np.dtype(value)


@pytest.mark.parametrize("value", [np.int32, np.float16, complex, object, "int64"])
def test_float_dtype_refuses(value):
    with _raises(ValueError, "dtype must be float64 or float32", str(np.dtype(value))):
        checks.float_dtype("dtype", value)


def test_float_dtype_refuses_what_numpy_cannot_read():
    with _raises(ArgumentTypeError, "dtype must be float64 or float32", "'no such dtype'"):
        checks.float_dtype("dtype", "no such dtype")


def test_instance_of():
    assert checks.instance_of("name", "text", str, "a string") == "text"
    with _raises(ArgumentTypeError, "name must be a string", "got int"):
        checks.instance_of("name", 3, str, "a string")


# ----------------------------------------------------------------------------- arrays
def test_finite_array_returns_the_same_array_when_it_can():
    values = np.array([1.0, 2.0])
    assert checks.finite_array("values", values) is values
    converted = checks.finite_array("values", [1, 2])
    assert converted.dtype == np.float64 and converted.tolist() == [1.0, 2.0]


def test_finite_array_names_the_first_bad_entry_and_leaves_the_input_alone():
    values = np.ones((2, 3))
    values[1, 2] = np.nan
    values[0, 1] = np.inf
    before = values.copy()
    with _raises(ValueError, "area[0, 1] is inf", "2 non-finite value(s) in area"):
        checks.finite_array("area", values)
    np.testing.assert_array_equal(values, before)


def test_finite_array_shape_and_type():
    with _raises(ValueError, "cm has shape (3,)", "expected (4,)"):
        checks.finite_array("cm", np.ones(3), shape=(4,))
    with pytest.raises(ArgumentTypeError, match="cm must be an array of real numbers"):
        checks.finite_array("cm", ["a", "b"])
    with pytest.raises(ValueError, match=r"^weight is nan"):
        checks.finite_array("weight", np.nan)


def test_index_array_accepts():
    result = checks.index_array("node", [0, 4, 2], 5)
    assert result.dtype == np.int64 and result.tolist() == [0, 4, 2]
    empty = checks.index_array("node", [], 5)
    assert empty.dtype == np.int64 and empty.size == 0


def test_index_array_names_the_first_index_out_of_range():
    with _raises(ValueError, "node[1] is 5, outside 0..4", "(2 indices out of range)"):
        checks.index_array("node", [0, 5, -1], 5)
    with pytest.raises(ValueError, match=r"^node\[0\] is -1, outside 0\.\.4$"):
        checks.index_array("node", [-1], 5)


def test_index_array_refuses_other_kinds():
    with pytest.raises(
        ArgumentTypeError, match="node must hold integer indices, got dtype float64"
    ):
        checks.index_array("node", [0.0, 1.5], 5)
    with pytest.raises(ArgumentTypeError, match="dtype bool"):
        checks.index_array("node", [True, False], 5)
    with pytest.raises(ValueError, match=r"node must be one-dimensional, got shape \(2, 1\)"):
        checks.index_array("node", [[0], [1]], 5)
