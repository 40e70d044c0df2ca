"""``wm-plan eval``: closed-loop evaluation of a policy (model × planner), nominal or randomized.

    wm-plan eval checkpoint=runs/planar-reach-tdmpc2-s0/checkpoint.pt episodes=50
    wm-plan eval model=mujoco env=planar-reach episodes=5 randomization=medium video.episodes=[0]
    wm-plan eval -m model=mujoco randomization=nominal,light,medium,strong hydra/launcher=joblib
    wm-plan eval-merge multirun/eval/DATE/TIME [more dirs] [--out DIR]
    wm-plan eval-compare RUN_DIR1 RUN_DIR2 ... [--out DIR]

A real ``@hydra.main`` entry over ``configs/eval.yaml``, so ``-m/--multirun``, launchers
(``hydra/launcher=joblib|local|submitit_slurm|ray``) and ``hydra.run.dir=`` work as in any Hydra
app. ``model=X`` is an alias of ``policy=X`` (``model`` is also the name of the learned-model
config group, which Hydra would otherwise try to override). Per episode: success, return, final
distance, steps, plan time, clamped commands, deadline misses and the model's open-loop
prediction error; aggregated with 95 % intervals (Wilson for success, bootstrap for means) into
``episodes.{csv,json}`` and ``summary.{md,json}`` in the run directory; a multirun's jobs are
merged into ``<sweep dir>/merged_*`` with success-versus-strength plots. See
docs/evaluation.md.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from wm_planning.cli import command

_ALIASES = {"model": "policy"}  # command-line key → config key


def _rewrite(arg: str) -> str:
    """``model=mujoco`` → ``policy=mujoco`` (any prefix ``+``/``~`` kept)."""
    prefix = arg[: len(arg) - len(arg.lstrip("+~"))]
    key, eq, value = arg[len(prefix) :].partition("=")
    return f"{prefix}{_ALIASES.get(key, key)}{eq}{value}" if eq else arg


def randomization_label(choice: str, values: Mapping[str, Any]) -> str:
    """``choice`` (the preset picked in the defaults) plus the knobs that differ from it, e.g.
    ``nominal+mass=0.3``."""
    from wm_planning.config import load_group

    preset = load_group("randomization", choice)
    diff = [f"+{k}={v:g}" for k, v in values.items() if float(preset.get(k, 0)) != float(v)]
    return choice + "".join(diff)


def run(cfg: DictConfig) -> list[dict[str, Any]]:
    """One evaluation job (the ``@hydra.main`` task): returns the per-episode rows."""
    import torch
    from hydra.core.hydra_config import HydraConfig

    from wm_planning.envs.randomization import RandomizationConfig
    from wm_planning.eval import (
        HarnessConfig,
        PolicyConfig,
        PredictionConfig,
        VideoConfig,
        evaluate,
        make_policy,
    )
    from wm_planning.eval.results import write_rows, write_summary

    raw = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(raw, dict)
    if raw["path"] != "inproc":
        raise NotImplementedError(
            f"path={raw['path']!r}: only path=inproc is supported; evaluating through the ROS "
            "nodes (`wm-plan ros up`) is not implemented yet (see docs/evaluation.md)"
        )
    policy_name = raw["policy"] or ("checkpoint" if raw["checkpoint"] else None)
    if policy_name is None:
        raise ValueError("say what to evaluate: model=mujoco or checkpoint=PATH")
    pcfg = PolicyConfig(
        policy=str(policy_name),
        **{k: raw[k] for k in PolicyConfig.__dataclass_fields__ if k != "policy"},
    )
    rand_values = dict(raw["randomization"])
    choices = HydraConfig.get().runtime.choices
    hcfg = HarnessConfig(
        episodes=int(raw["episodes"]),
        seed=int(raw["seed"]),
        steps=raw["steps"],
        randomization=RandomizationConfig.from_dict(rand_values),
        randomization_label=randomization_label(
            str(choices.get("randomization") or "nominal"), rand_values
        ),
        prediction=PredictionConfig(**raw["prediction"]),
        video=VideoConfig(**raw["video"]),
        progress=bool(raw["progress"]),
    )
    if raw["threads"] is not None:
        torch.set_num_threads(int(raw["threads"]))
    out = Path(HydraConfig.get().runtime.output_dir)
    policy = make_policy(pcfg)
    try:
        records = evaluate(policy, hcfg, out)
    finally:
        policy.close()
    rows = [r.row() for r in records]
    write_rows(out, rows)
    md = write_summary(out, rows, title=f"{policy.label} on {policy.env_name}")
    s = [line for line in md.splitlines() if line.startswith("| ")][-1]
    ok = sum(r.success for r in records)
    print(
        f"{policy.label} on {policy.env_name} ({hcfg.randomization_label}): success "
        f"{100 * ok / len(records):.0f}% over {len(records)} episodes\n{s}\nresults: {out}",
        flush=True,
    )
    return rows


def _hydra_entry() -> Callable[[], Any]:
    import hydra

    from wm_planning.config import config_dir

    return hydra.main(config_path=str(config_dir()), config_name="eval", version_base="1.3")(run)


@command("eval", help="closed-loop evaluation (model × planner × randomization): tables, plots")
def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():  # e.g. left by an earlier compose() in-process
        GlobalHydra.instance().clear()
    saved = sys.argv
    sys.argv = ["wm-plan-eval", *(_rewrite(a) for a in argv)]  # hydra.main parses sys.argv
    try:
        _hydra_entry()()
    finally:
        sys.argv = saved
    return 0


def _dirs_and_out(argv: list[str], name: str) -> tuple[list[Path], Path | None]:
    out: Path | None = None
    dirs: list[Path] = []
    it = iter(argv)
    for a in it:
        if a == "--out":
            out = Path(next(it))
        elif a.startswith("out="):
            out = Path(a[4:])
        else:
            dirs.append(Path(a))
    if not dirs:
        raise SystemExit(f"usage: wm-plan {name} DIR [DIR ...] [--out DIR]")
    missing = [str(d) for d in dirs if not d.exists()]
    if missing:
        raise SystemExit(f"wm-plan {name}: not found: {missing}")
    return dirs, out


@command("eval-merge", help="merge eval runs (e.g. a multirun's jobs): one table, knob plots")
def merge_main(argv: list[str]) -> int:
    if not argv or any(a in ("-h", "--help") for a in argv):
        print("usage: wm-plan eval-merge DIR [DIR ...] [--out DIR]  (default out: the first DIR)")
        return 0
    from wm_planning.eval.results import merge

    dirs, out = _dirs_and_out(argv, "eval-merge")
    out = out or dirs[0]
    print(merge(dirs, out))
    print(f"merged results: {out / 'merged_summary.md'}")
    return 0


@command("eval-compare", help="compare eval runs (checkpoints/planners) on their common seeds")
def compare_main(argv: list[str]) -> int:
    if not argv or any(a in ("-h", "--help") for a in argv):
        print("usage: wm-plan eval-compare RUN_DIR RUN_DIR [...] [--out DIR]")
        return 0
    import json

    from wm_planning.eval.results import compare

    dirs, out = _dirs_and_out(argv, "eval-compare")
    summary, md = compare(dirs)
    print(md)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "comparison.md").write_text(md)
        (out / "comparison.json").write_text(json.dumps(summary, indent=1) + "\n")
        print(f"comparison: {out / 'comparison.md'}")
    return 0
