"""Typed results of the reliability scenarios: each holds its measured figures and judges its own goals
(`goals()`); `combined` judges the goals that span scenarios; `figures.Figures` is one whole run, written as
JSON and rebuilt from it (`load_figures`). The report only renders these."""

from reliability.results.base import Goal, ScenarioError
from reliability.results.figures import Figures, load_figures

__all__ = ["Figures", "Goal", "ScenarioError", "load_figures"]
