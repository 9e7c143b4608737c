"""docs/theory.md's claims, checked against the planner."""

import pytest

from experiments.revolve_check import planner_forward_steps, revolve_forward_steps


def test_revolve_formula_textbook_values():
    # Values from the closed form: one checkpoint reverses l steps with l(l-1)/2 advances.
    assert [revolve_forward_steps(n, 1) for n in range(1, 6)] == [0, 1, 3, 6, 10]
    assert revolve_forward_steps(10, 2) == 20
    with pytest.raises(ValueError):
        revolve_forward_steps(0, 1)


@pytest.mark.parametrize("checkpoints", [1, 2, 3, 5])
def test_optimal_planner_reproduces_revolve(checkpoints):
    for steps in range(1, 25):
        assert planner_forward_steps(steps, checkpoints) == revolve_forward_steps(steps, checkpoints), (
            steps, checkpoints)
