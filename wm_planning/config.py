"""Hydra configuration: compose configs from the repository's ``configs/`` tree.

``configs/{planner,task,robot,randomization,...}`` are Hydra groups. Commands call
:func:`compose` with the user's ``key=value`` overrides, so the command line follows Hydra habits
without each command owning a ``@hydra.main``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf


def config_dir() -> Path:
    """``$WM_PLANNING_CONFIGS`` if set, else ``configs/`` beside the package (or, for a colcon
    install, in the package's ament share directory)."""
    from robots import share_path

    env = os.environ.get("WM_PLANNING_CONFIGS")
    path = Path(env) if env else share_path("configs")
    if not path.is_dir():
        raise FileNotFoundError(f"config directory {path} not found (set WM_PLANNING_CONFIGS)")
    return path


def compose(
    config_name: str, overrides: list[str] | None = None, return_hydra_config: bool = False
) -> DictConfig:
    """Compose ``configs/<config_name>.yaml`` with Hydra overrides (``group=option``, ``a.b=1``);
    ``return_hydra_config`` keeps the ``hydra`` node (``hydra.runtime.choices``: picked options)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return hydra_compose(
            config_name=config_name,
            overrides=list(overrides or []),
            return_hydra_config=return_hydra_config,
        )


def load_group(group: str, option: str) -> dict[str, Any]:
    """Read one option of a config group (e.g. ``planner/mppi.yaml``) as a plain dict."""
    path = config_dir() / group / f"{option}.yaml"
    if not path.is_file():
        options = sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))
        raise FileNotFoundError(f"no {group} config {option!r}; available: {options}")
    data = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a mapping")
    return {str(k): v for k, v in data.items()}


def resolve_planner_choice(raw: dict[str, Any], choice: str | None) -> None:
    """Turn a picked ``planner`` group (``planner=icem planner.population=64``: ``raw["planner"]``
    is then the composed yaml, ``choice`` its file name) into the commands' two keys, in place:
    ``raw["planner"]`` = the option's name and ``raw["planner_options"]`` = only the values the
    user changed (an explicit ``planner_options`` wins). Options left alone keep the command's
    meaning of "not set" (a checkpoint's run's budget, demo.yaml's for ``model=mujoco``)."""
    sel = raw.get("planner")
    if not isinstance(sel, dict):
        raw.setdefault("planner", sel)
        return
    if choice is None:
        raise ValueError("a planner group was composed without its option name")
    base = load_group("planner", choice)
    changed = {k: v for k, v in sel.items() if k not in base or base[k] != v}
    raw["planner"] = choice
    if changed:
        raw["planner_options"] = {**changed, **(raw.get("planner_options") or {})}
