"""Engine layer: "How much should I train?" (see ``advisor.py``)."""

from .advisor import DEFAULT_BUDGET_S, Advisor
from .plans import Advice, PlanEstimate, recommend

__all__ = ["DEFAULT_BUDGET_S", "Advice", "Advisor", "PlanEstimate", "recommend"]
