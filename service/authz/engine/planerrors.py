"""How planning a policy line fails: a form no plan can express, or an error for every row."""

from __future__ import annotations


class Unplannable(Exception):
    """A condition form the plan cannot express; `form` says which."""

    def __init__(self, form: str) -> None:
        self.form = form
        super().__init__(form)


class PlanEvalError(Exception):
    """Evaluation failed for every row alike (Check would answer REASON_POLICY_ERROR)."""
