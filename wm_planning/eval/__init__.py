"""Closed-loop evaluation: policies (model × planner), the episode harness, results tables with
confidence intervals, sim-to-real plots, videos, merging and comparison (``wm-plan eval``)."""

from .harness import EpisodeRecord, HarnessConfig, PredictionConfig, VideoConfig, evaluate
from .policies import Policy, PolicyConfig, available_policies, make_policy, register_policy
from .results import aggregate, compare, load_rows, markdown_table, merge

__all__ = [
    "EpisodeRecord",
    "HarnessConfig",
    "Policy",
    "PolicyConfig",
    "PredictionConfig",
    "VideoConfig",
    "aggregate",
    "available_policies",
    "compare",
    "evaluate",
    "load_rows",
    "make_policy",
    "markdown_table",
    "merge",
    "register_policy",
]
