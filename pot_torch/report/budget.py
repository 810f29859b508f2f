"""The report's evaluation budget: one AccuracyAwareQuantization ranking step, planned up front and never exceeded.

AccuracyAwareQuantization ranks ``G`` quantizer groups by evaluating each on the ``R`` samples INT8 gets most wrong:
``G * R`` samples through the metric. The report spends no more (besides the FP and INT8 evaluations on all ``N``
samples, which AccuracyAwareQuantization does too and hands over when it writes the report). With a ranking sample
of ``n`` items it spends ``2n`` on the FP and INT8 outputs, ``G*n`` on the groups, at most ``(G-1)*n`` on the revert
walk and ``N`` on each check of a set on all samples. A check is planned when it leaves at least half of the budget
for the sample (``N <= G*R/2``); ``n`` is then as large as the worst-case walk and the check allow.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict

#: What the report's own evaluations are for, in the order they are spent.
PURPOSES = ("outputs", "ranking", "steps", "check")


@dataclass
class Budget:
    """Samples the report may put through the metric (``limit``) and what it spent, by purpose.

    :ivar limit: one AccuracyAwareQuantization ranking step, ``groups * ranked``.
    :ivar groups: the quantizer groups (``G``).
    :ivar sample_size: items of the ranking sample (``n``).
    :ivar items: the validation items a check of a set on all samples costs (``N``).
    :ivar check_planned: whether one check on all items is reserved from the start.
    """

    limit: int
    groups: int
    sample_size: int
    items: int
    check_planned: bool
    spent: Dict[str, int] = field(default_factory=lambda: dict.fromkeys(PURPOSES, 0))

    @classmethod
    def plan(cls, groups: int, ranked: int, items: int) -> "Budget":
        """The plan for ``groups`` quantizer groups, ``ranked`` samples AccuracyAwareQuantization ranks on and
        ``items`` validation items: a check if it leaves half the budget, the largest sample the rest allows with
        a walk through every group (at least one item: :attr:`over_budget` says when even that does not fit)."""
        limit = groups * ranked
        check = 2 * items <= limit
        size = (limit - (items if check else 0)) // (2 * groups + 1)
        return cls(limit, groups, max(1, min(size, items)), items, check)

    @property
    def worst_case(self) -> int:
        """The most the plan can spend: outputs, ranking, a walk through every group and the planned check."""
        return (2 * self.groups + 1) * self.sample_size + (self.items if self.check_planned else 0)

    @property
    def over_budget(self) -> bool:
        """Whether even a one-item sample's outputs and ranking exceed the limit (the walk then stops at once)."""
        return (self.groups + 2) * self.sample_size > self.limit

    @property
    def total(self) -> int:
        """Samples spent so far."""
        return sum(self.spent.values())

    @property
    def left(self) -> int:
        """Samples the budget still allows (negative when the plan could not fit, see :meth:`plan`)."""
        return self.limit - self.total

    def affords(self, count: int, reserve: int = 0) -> bool:
        """Whether ``count`` more samples fit, keeping ``reserve`` for later."""
        return count + reserve <= self.left

    def spend(self, purpose: str, count: int) -> None:
        """Record ``count`` samples spent on ``purpose`` (one of :data:`PURPOSES`)."""
        self.spent[purpose] += count
