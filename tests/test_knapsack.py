"""The keep-set knapsack in C against brute force; bad input; a mutating sequence."""

from __future__ import annotations

import random

import pytest

from tiny_backprop import _C
from tiny_backprop import _reference_planner as R


def test_matches_brute_force_on_random_cases() -> None:
    rng = random.Random(3)
    for _ in range(200):
        n = rng.randint(0, 9)
        w = [rng.randint(0, 60) for _ in range(n)]
        v = [float(rng.randint(0, 100)) for _ in range(n)]
        cap = rng.randint(0, 200)
        value, chosen = _C.knapsack(w, v, cap, slots=max(1, cap))
        best, _ = R.knapsack(w, v, cap)
        assert value == pytest.approx(best)
        assert sum(w[i] for i in chosen) <= cap
        assert sum(v[i] for i in chosen) == pytest.approx(value)
        # coarse units: still fits, never better
        coarse, ch2 = _C.knapsack(w, v, cap, slots=4)
        assert sum(w[i] for i in ch2) <= cap and coarse <= best + 1e-9


def test_bad_input_names_the_argument() -> None:
    with pytest.raises(TypeError, match=r"weights\[1\] must be an int"):
        _C.knapsack([1, 2.5], [1.0, 1.0], 10)
    with pytest.raises(TypeError, match=r"weights\[0\] must be an int"):
        _C.knapsack([True], [1.0], 10)
    with pytest.raises(ValueError, match=r"values\[0\] must be finite"):
        _C.knapsack([1], [float("inf")], 10)
    with pytest.raises(ValueError, match=r"weights\[0\] must be in"):
        _C.knapsack([-1], [1.0], 10)
    with pytest.raises(ValueError, match="values has 1 entries"):
        _C.knapsack([1, 2], [1.0], 10)
    with pytest.raises(ValueError, match="capacity"):
        _C.knapsack([1], [1.0], -1)
    with pytest.raises(ValueError, match="slots"):
        _C.knapsack([1], [1.0], 5, slots=0)


def test_a_list_mutated_while_read_cannot_crash() -> None:
    items = [1, 2, 3]

    class Evil(float):
        def __float__(self) -> float:
            items.clear()
            return 1.0

    value, chosen = _C.knapsack(items, [Evil(1.0), 2.0, 3.0], 10)
    assert value == pytest.approx(6.0) and chosen == (0, 1, 2)


def test_many_calls_leak_nothing() -> None:
    import tracemalloc

    def run() -> None:
        for _ in range(2000):
            _C.knapsack([1, 2, 3], [1.0, 2.0, 3.0], 4)
            try:
                _C.knapsack([1, "x"], [1.0, 1.0], 4)
            except TypeError:
                pass

    run()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    run()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert after - before < 64 * 1024
