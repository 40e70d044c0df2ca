"""``wm-plan eval``: closed-loop evaluation of a policy (model × planner), nominal or randomized.

    wm-plan eval checkpoint=runs/planar-reach-tdmpc2-s0/checkpoint.pt episodes=50
    wm-plan eval model=mujoco env=planar-reach episodes=5 randomization=medium video.episodes=[0]
    wm-plan eval -m model=mujoco randomization=nominal,light,medium,strong hydra/launcher=joblib
    wm-plan eval model=mujoco env=planar-goal_reach episodes=10 path=ros
    wm-plan eval-merge multirun/eval/DATE/TIME [more dirs] [--out DIR]
    wm-plan eval-compare RUN_DIR1 RUN_DIR2 ... [--out DIR]

A real ``@hydra.main`` entry over ``configs/eval.yaml``, so ``-m/--multirun``, launchers
(``hydra/launcher=joblib|local|submitit_slurm|ray``) and ``hydra.run.dir=`` work as in any Hydra
app. ``model=X`` is an alias of ``policy=X`` (``model`` is also the name of the learned-model
config group, which Hydra would otherwise try to override). Per episode: success, return, final
distance, steps, plan time, clamped commands, deadline misses and the model's open-loop
prediction error; aggregated with 95 % intervals (Wilson for success, bootstrap for means) into
``episodes.{csv,json}`` and ``summary.{md,json}`` in the run directory; a multirun's jobs are
merged into ``<sweep dir>/merged_*`` with success-versus-strength plots. ``path=ros`` runs
the episodes through the arm node and the planner node instead (processes started here, driven
by ``ros_nodes/eval_client.py``; this module never imports rclpy) into the same files. See
docs/evaluation.md.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from wm_planning.cli import command

if TYPE_CHECKING:  # the eval package pulls in torch: imported when a job runs
    from wm_planning.eval import HarnessConfig, PolicyConfig

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

    from wm_planning.config import resolve_planner_choice
    from wm_planning.envs.randomization import RandomizationConfig
    from wm_planning.eval import HarnessConfig, PolicyConfig, PredictionConfig, VideoConfig
    from wm_planning.eval.results import write_rows, write_summary

    container = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(container, dict)
    raw: dict[str, Any] = {str(k): v for k, v in container.items()}
    resolve_planner_choice(raw, HydraConfig.get().runtime.choices.get("planner"))
    episodes_on = _PATHS.get(str(raw["path"]))
    if episodes_on is None:
        raise ValueError(f"path must be one of {sorted(_PATHS)}, got {raw['path']!r}")
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
    rows, title = episodes_on(pcfg, hcfg, raw, out)
    write_rows(out, rows)
    md = write_summary(out, rows, title=title)
    s = [line for line in md.splitlines() if line.startswith("| ")][-1]
    ok = sum(bool(r["success"]) for r in rows)
    print(
        f"{title} ({hcfg.randomization_label}): success {100 * ok / len(rows):.0f}% over "
        f"{len(rows)} episodes\n{s}\nresults: {out}",
        flush=True,
    )
    return rows


Episodes = tuple[list[dict[str, Any]], str]  # rows, title


def _inproc(pcfg: PolicyConfig, hcfg: HarnessConfig, raw: Mapping[str, Any], out: Path) -> Episodes:
    """Episodes in this process: the policy's Controller steps the (randomized) env."""
    from wm_planning.eval import evaluate, make_policy

    policy = make_policy(pcfg)
    try:
        records = evaluate(policy, hcfg, out)
    finally:
        policy.close()
    return [r.row() for r in records], f"{policy.label} on {policy.env_name}"


# -- path=ros: the arm node + planner node, driven by ros_nodes/eval_client.py ----------------------
#: task (config name) -> (the goal the planner node is sent, the node parameter naming the task
#: the ``mujoco`` adapter plans that goal kind with)
_ROS_TASKS = {"goal_reach": ("joints", "task"), "reach": ("pose", "pose_task")}
#: knobs acting inside env.step()/observations, which the arm node does not apply
_STEP_KNOBS = ("obs_noise", "pixel_noise", "action_noise", "latency", "encoder_offset")


@dataclass(frozen=True)
class RosPolicy:
    """What the planner node plans with: its parameters and the labels of the results."""

    env_name: str
    label: str
    planner_name: str
    planner_params: dict[str, Any]  # wm_planner parameters
    goal: str  # joints | pose | image: the planner-node topic the episode goals go to
    pixels: bool = False  # the model plans from the camera (else the arm renders nothing)


def _ros_task(env_name: str) -> tuple[str, str]:
    """``(robot, task)`` of an arm env the ROS path can send goals for."""
    robot, _, task = env_name.partition("-")
    if task not in _ROS_TASKS:
        raise ValueError(
            f"path=ros runs the arm envs <robot>-{{{','.join(_ROS_TASKS)}}}, got {env_name}"
        )
    return robot, task


def _planner_params(
    planner: str, options: Mapping[str, Any], horizon: int, replan_every: int
) -> dict[str, Any]:
    # Entries are parsed as YAML by the node (JSON is YAML). An empty list would reach the node
    # as an unset parameter, so "no options" is the no-op name=<planner>.
    overrides = [f"{k}={json.dumps(v)}" for k, v in options.items()] or [f"name={planner}"]
    return {
        "planner": planner,
        "planner_overrides": overrides,
        "horizon": int(horizon),
        "replan_every": int(replan_every),
    }


def _ros_mujoco(pcfg: PolicyConfig) -> RosPolicy:
    """``model=mujoco``: the node's exact-physics adapter with the in-process policy's planner,
    budget, horizon and replanning (:func:`~wm_planning.eval.policies.mujoco_settings`)."""
    from wm_planning.eval.policies import mujoco_settings

    if pcfg.twin_scale:
        raise ValueError("twin_scale is in-process only (the planner node's twin is nominal)")
    s = mujoco_settings(pcfg)
    params = _planner_params(s.planner_name, s.planner_options, s.horizon, s.replan_every)
    params.update(model="mujoco", checkpoint="", model_threads=s.nthread)
    label = pcfg.label or f"ros:mujoco/{s.planner_name}"
    goal = _ROS_TASKS[_ros_task(s.env_name)[1]][0]
    return RosPolicy(s.env_name, label, s.planner_name, params, goal)


def _ros_checkpoint(pcfg: PolicyConfig) -> RosPolicy:
    """``checkpoint=PATH``: the node's ``checkpoint`` adapter, planner and options resolved as
    :class:`~wm_planning.eval.policies.CheckpointPolicy` does (horizon 0: the planner
    config's, as in-process)."""
    from wm_planning.training import load_checkpoint

    if pcfg.num_prior is not None:
        raise ValueError("num_prior= is in-process only (the node takes the training run's)")
    assert pcfg.checkpoint is not None  # PolicyConfig checks it
    ck = load_checkpoint(pcfg.checkpoint)
    train = ck.config
    opts = None if pcfg.planner_options is None else dict(pcfg.planner_options)
    planner, options = ck.planner(pcfg.planner, opts)
    replan = pcfg.replan_every or int(train.get("replan_every", 1))
    params = _planner_params(planner, options, pcfg.horizon or 0, replan)
    params.update(model="checkpoint", checkpoint=str(Path(pcfg.checkpoint).resolve()))
    label = pcfg.label or f"ros:{Path(pcfg.checkpoint).parent.name}:{ck.model}/{planner}"
    env_name = str(pcfg.env or train.get("env"))
    pixels = bool(train.get("pixels", False))
    # Pixel models see their target only in images (ros_nodes/models.py CheckpointModel).
    goal = "image" if pixels else _ROS_TASKS[_ros_task(env_name)[1]][0]
    return RosPolicy(env_name, label, planner, params, goal, pixels=pixels)


_ROS_POLICIES: dict[str, Callable[[PolicyConfig], RosPolicy]] = {
    "mujoco": _ros_mujoco,
    "checkpoint": _ros_checkpoint,
}


def ros_node_params(
    rp: RosPolicy, hcfg: HarnessConfig, ros_cfg: Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    """The params file of both nodes: ``configs/ros/<robot>.yaml`` with the eval's robot, task,
    randomization and planner on top, then ``ros.overrides``."""
    import yaml

    from wm_planning.config import config_dir
    from wm_planning.envs.arm import TaskConfig

    robot, task = _ros_task(rp.env_name)
    base = config_dir() / "ros" / f"{ros_cfg.get('params') or robot}.yaml"
    if not base.is_file():
        known = sorted(p.stem for p in (config_dir() / "ros").glob("*.yaml"))
        raise ValueError(f"no ROS params {base}; set ros.params to one of {known}")
    data: dict[str, dict[str, Any]] = yaml.safe_load(base.read_text()) or {}
    tc = TaskConfig.load(task)
    rate = tc.control_hz / tc.action_repeat  # planner ticks = env steps, as in-process
    knobs = dataclasses.asdict(hcfg.randomization)
    arm: dict[str, Any] = {
        "task": task,
        "randomization": "",
        "real_time_factor": float(ros_cfg["real_time_factor"]),
    }
    on = [f"{k}={json.dumps(v)}" for k, v in knobs.items() if v]
    if on:  # an empty list has no type in a params file
        arm["randomization_overrides"] = on
    planner: dict[str, Any] = {
        **rp.planner_params,
        _ROS_TASKS[task][1]: task,
        "control_rate": rate,
        "seed": hcfg.seed,
        "imagined_rate": 0.0,
        # one status per plan: plan times are sampled from it
        "status_rate": max(5.0, rate / int(rp.planner_params["replan_every"])),
    }
    if not rp.pixels:  # state-based: no rendering, no image traffic
        arm["camera_rate"] = 0.0
        planner["camera_topic"] = ""
        planner["camera_info_topic"] = ""
    data.setdefault("/**", {}).setdefault("ros__parameters", {})["robot"] = robot
    for node, params in (("mujoco_arm", arm), ("wm_planner", planner)):
        data.setdefault(node, {}).setdefault("ros__parameters", {}).update(params)
    for node, params in (ros_cfg.get("overrides") or {}).items():
        data.setdefault(node, {}).setdefault("ros__parameters", {}).update(params)
    return data


def _ros(pcfg: PolicyConfig, hcfg: HarnessConfig, raw: Mapping[str, Any], out: Path) -> Episodes:
    """Episodes through the deployed ROS path: both nodes and the episode client as processes
    (the library never imports rclpy); their logs go to ``out/ros_*.log``."""
    import os
    import subprocess
    import time

    import yaml

    from wm_planning.commands import ros
    from wm_planning.eval import EpisodeRecord

    if hcfg.video.episodes:
        raise ValueError("video.episodes: no videos on path=ros (record the camera topic)")
    make = _ROS_POLICIES.get(pcfg.policy)
    if make is None:
        raise ValueError(f"path=ros evaluates {sorted(_ROS_POLICIES)}, not {pcfg.policy!r}")
    rp = make(pcfg)
    ros_cfg = raw["ros"]
    ignored = [k for k in _STEP_KNOBS if getattr(hcfg.randomization, k)]
    if ignored:
        print(f"[eval] path=ros: the arm node does not apply {ignored}", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    data = ros_node_params(rp, hcfg, ros_cfg)
    params = out / "ros_params.yaml"
    params.write_text(yaml.safe_dump(data, sort_keys=False))
    jsonl = out / "ros_episodes.jsonl"
    jsonl.unlink(missing_ok=True)
    planner = data["wm_planner"]["ros__parameters"]
    spec = {
        "env": rp.env_name,
        "goal": rp.goal,
        "image_size": planner.get("image_size", [64, 64]),  # image goals: the node's size
        "camera": planner.get("camera", ""),
        "randomization": dataclasses.asdict(hcfg.randomization),
        "seed": hcfg.seed,
        "episodes": hcfg.episodes,
        "steps": hcfg.steps,
        "out": str(jsonl),
        "real_time_factor": float(ros_cfg["real_time_factor"]),
        "startup_timeout": float(ros_cfg["startup_timeout"]),
    }
    (out / "ros_spec.json").write_text(json.dumps(spec, indent=1) + "\n")
    env = ros.ros_env()
    # A domain of its own (unless given): parallel jobs and a running `ros up` stay apart.
    domain = ros_cfg.get("domain_id")
    env["ROS_DOMAIN_ID"] = str(1 + os.getpid() % 100 if domain is None else int(domain))
    client = [sys.executable, "-m", "ros_nodes.eval_client", str(out / "ros_spec.json")]
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        procs.update(ros.start(["arm", "planner"], params, env, log_dir=out))
        procs["eval_client"] = subprocess.Popen(client, env=env)
        while procs["eval_client"].poll() is None:
            dead = [n for n in ("arm", "planner") if procs[n].poll() is not None]
            if dead:
                tails = "".join(
                    f"\n--- {out / f'ros_{n}.log'} (end) ---\n"
                    + "\n".join((out / f"ros_{n}.log").read_text().splitlines()[-5:])
                    for n in dead
                )
                raise RuntimeError(f"path=ros: {dead} exited early{tails}")
            time.sleep(0.2)
    finally:
        ros.stop(procs)
    if procs["eval_client"].returncode != 0:
        raise RuntimeError(
            f"path=ros: the episode client failed (exit {procs['eval_client'].returncode}); "
            f"node logs in {out}/ros_*.log"
        )
    rows = []
    for line in jsonl.read_text().splitlines():
        r = json.loads(line)
        rec = EpisodeRecord(
            policy=rp.label,
            env=rp.env_name,
            planner=rp.planner_name,
            randomization=hcfg.randomization_label,
            **{k: r[k] for k in _ROS_COLUMNS},
            pred_reward_err=math.nan,  # no open-loop prediction check through ROS
            pred_distance_err=math.nan,
            path="ros",
            knobs=dataclasses.asdict(hcfg.randomization),
        )
        rows.append(rec.row())
    return rows, f"{rp.label} on {rp.env_name}"


#: EpisodeRecord fields the episode client measures (the rest is labels or NaN)
_ROS_COLUMNS = (
    "episode",
    "seed",
    "success",
    "ever_success",
    "ret",
    "final_distance",
    "initial_distance",
    "steps",
    "plans",
    "plan_ms_mean",
    "plan_ms_max",
    "deadline_misses",
    "clamped",
    "latency_ms_p50",
    "latency_ms_p99",
)

_PATHS: dict[str, Callable[[PolicyConfig, HarnessConfig, Mapping[str, Any], Path], Episodes]] = {
    "inproc": _inproc,
    "ros": _ros,
}


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
