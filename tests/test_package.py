import pytest

import tiny_backprop
from tiny_backprop import _C


def test_extension_loads_and_maps_status_codes():
    assert _C.strerror(0) == "success"
    assert _C.strerror(4) == "graph has a cycle"
    assert _C.strerror(12345) == "unknown status"


def test_unknown_attribute_is_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        tiny_backprop.nope  # noqa: B018


def test_budget_error_is_value_error_with_minimum():
    err = tiny_backprop.BudgetError("too small", minimum_bytes=10, budget_bytes=5)
    assert isinstance(err, ValueError)
    assert err.minimum_bytes == 10
