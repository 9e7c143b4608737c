"""Exceptions raised by tiny-backprop."""

from __future__ import annotations


class BudgetError(ValueError):
    """No schedule fits in the memory budget.

    Attributes:
        minimum_bytes: the smallest budget (bytes) for which a schedule exists.
        budget_bytes: the budget that was asked for (bytes).
    """

    def __init__(self, message: str, *, minimum_bytes: int, budget_bytes: int) -> None:
        super().__init__(message)
        self.minimum_bytes = int(minimum_bytes)
        self.budget_bytes = int(budget_bytes)
