"""``wm-plan goal``: drive a simulated arm to a goal image with a visual world model (MPC).

    wm-plan goal checkpoint=runs/dino.pt env=planar-goal_reach [goal_image=goal.png] seed=0 \\
        episodes=1 planner=cem video=runs/goal.mp4

Each episode: reset the env (``seed + i``), take the goal image from ``goal_image`` (a file) or
the env's own goal, plan ``plan_blocks`` model steps with the chosen planner on the model's goal
cost (:func:`wm_planning.costs_visual.goal_cost`), execute one frame-skip block, replan. The
video shows camera | goal | the imagined final frame of the latest plan (decoded rollout).
Prints success (``env.evaluate()``), final distance and plan time per control step; with
``results=PATH.json`` also writes every episode and the summary. ``held_out_from=DATA_DIR``
(or ``[DIR,DIR]``) refuses to run when an episode seed is one of that dataset's (training)
episode seeds, so the start/goal pairs are guaranteed unseen; it also logs, every step, the
Mahalanobis distance of the observed proprioception to the training data's
(:class:`~wm_planning.data.support.DataSupport`): ``support_trace`` and ``left_support_step``
(the first step beyond the radius holding 99.9 % of the data) per episode, and how many
episodes left it in the summary. Beyond it the model's predictions are extrapolations.
``support_weight=W`` (with ``held_out_from``) adds to the objective ``W`` × how far each plan's
commanded joint targets go beyond the data's joint positions (:func:`joint_support_penalty`:
the targets follow exactly from the actions, so this keeps plans where the model has seen the
arm without trusting its predictions).
``workers=N`` shares the episodes among N processes of ``threads`` torch threads each (a
50-pair evaluation on a 2-core machine: ``workers=2 threads=1``); results are the same episodes in seed order, and the plan
times then include the other workers' contention (the summary records ``workers``).
``action_box=data`` (default) keeps plans inside the box of actions the model was trained on
(the checkpoint's ``action_box``; the env's box for checkpoints without one), ``env`` samples
the env's whole box.
``oracle=true`` plans with the same objective, planner and budget on the simulator instead of the
learned predictor (:class:`~wm_planning.models.rendered_dynamics.RenderedDynamics`: exact
rollouts rendered and encoded by the checkpoint's own encoder). Its success rate is the ceiling
of that objective; the gap down to the learned model's is prediction error.
``audit=K`` asks, at every plan of the learned model, whether it ranked the planner's own
candidates as the simulator does: of all the sequences the planner evaluated, ``K`` spread over
the model's cost ranking (its pick first) are rolled out exactly, rendered and scored with the
same goal cost (:class:`~wm_planning.models.rendered_dynamics.RenderedDynamics`). Each plan
records the Spearman correlation of the two costs, the regret of the model's pick and whether it
was the true best (:func:`wm_planning.commands.probe.rank_metrics`); the summary gives them by
phase of the episode. The audit does not change what the episode does.
``record=DIR`` writes the episodes as a dataset (:class:`~wm_planning.data.DatasetWriter`, the
format ``wm-plan collect`` writes): the states the planner itself visits, for fine-tuning the
model where it plans (``wm-plan train-visual data=... init_from=...``), as visual foresight
collects its data with its own planner.

Designated pixels (visual foresight, Finn & Levine 2017): instead of a goal image, pixels in the
camera image and where each should go, scored by the expected distance under the model's
predicted pixel distributions (:class:`~wm_planning.costs_visual.DesignatedPixelCost`).
``designated.pixels=[[r, c], ...] designated.targets=[[r, c], ...]`` are a user's marks (at
the model's image size); between plans the marks are carried by the model itself: its pixel
distributions propagated through the actions executed (no tracker, as in visual MPC, so they
drift where the model errs). ``designated.keypoints=true`` marks the arm's link tips and sets
their targets where the goal configuration puts them; each plan re-locates them by projecting
the simulator's link positions (a perfect tracker).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from wm_planning.cli import command


def _resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if img.shape[:2] == size:
        return img
    t = torch.as_tensor(img[..., :3]).permute(2, 0, 1)[None].float()
    t = torch.nn.functional.interpolate(t, size=size, mode="bilinear", align_corners=False)
    return t[0].permute(1, 2, 0).round().clamp(0, 255).byte().numpy()


def _panel(img: np.ndarray, scale: int) -> np.ndarray:
    return np.repeat(np.repeat(img, scale, 0), scale, 1)


def _designated(cfg: Any, env: Any, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray] | None:
    """(marks ``P×2``, targets ``P×2``) in (row, col) pixels at ``size``, or None (goal image)."""
    d = cfg.get("designated")
    if d is None or not (d.get("keypoints") or d.get("pixels") is not None):
        return None
    if d.get("keypoints"):
        if d.get("pixels") is not None or d.get("targets") is not None:
            raise ValueError("designated.keypoints=true marks the arm itself: drop pixels/targets")
        if not hasattr(env, "keypoints"):
            raise ValueError(f"designated.keypoints needs an arm env, not {cfg.env}")
        saved = env.get_state()
        env.set_state(env.goal_state())
        targets = _in_frame(env.project(env.keypoints(), None, size), size)
        env.set_state(saved)
        return _in_frame(env.project(env.keypoints(), None, size), size), targets
    marks = np.asarray(d.get("pixels"), dtype=float).reshape(-1, 2)
    targets = np.asarray(d.get("targets") or [], dtype=float).reshape(-1, 2)
    if marks.shape != targets.shape or not len(marks):
        raise ValueError(
            f"designated.pixels and designated.targets need one target per mark, got "
            f"{len(marks)} marks and {len(targets)} targets"
        )
    for name, pts in (("pixels", marks), ("targets", targets)):
        if np.any(pts < 0) or np.any(pts[:, 0] > size[0] - 1) or np.any(pts[:, 1] > size[1] - 1):
            raise ValueError(f"designated.{name} must lie inside the {size} image, got {pts}")
    return marks, targets


def _in_frame(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Keypoints that left the image are held at its border (a tracker's last sighting)."""
    return np.clip(points, 0, np.asarray(size, dtype=float) - 1)


def _draw_marks(img: np.ndarray, points: np.ndarray) -> np.ndarray:
    """A copy of ``img`` with a red 3×3 square at each (row, col) (the video's goal panel)."""
    out = np.array(img, copy=True)
    h, w = out.shape[:2]
    for r, c in np.round(points).astype(int):
        out[max(r - 1, 0) : min(r + 2, h), max(c - 1, 0) : min(c + 2, w)] = (255, 0, 0)
    return out


def run_goal_episode(
    cfg: Any,
    model: Any,
    seed: int,
    video: Path | None,
    profile: bool = False,
    box: dict[str, Any] | None = None,
    support: Any = None,
    joint_support: Any = None,
) -> dict[str, Any]:
    from omegaconf import OmegaConf

    from wm_planning import costs, envs, planners
    from wm_planning.control import Controller
    from wm_planning.costs_visual import goal_cost

    size = (int(model.obs_shape[0]), int(model.obs_shape[1]))
    env = envs.make(str(cfg.env), pixels=True, image_size=size)
    obs = env.reset(seed=seed)
    visual = model  # the goal cost is always the visual model's own
    if cfg.get("oracle"):
        from wm_planning.models.rendered_dynamics import RenderedDynamics

        if cfg.designated.keypoints or cfg.designated.pixels is not None:
            raise ValueError(
                "oracle=true plans on rendered exact rollouts, which have no pixel distributions "
                "for designated pixels: use a goal image"
            )
        model = RenderedDynamics(visual, env)
    if cfg.goal_image:
        import imageio.v2 as imageio

        goal = _resize(np.asarray(imageio.imread(str(cfg.goal_image))), size)
        goal_proprio = None  # an image file says nothing about the joints
    else:
        goal_obs = env.goal_observation(size)
        goal, goal_proprio = goal_obs["pixels"], goal_obs.get("proprio")
    cost_options = OmegaConf.to_container(cfg.cost, resolve=True) if cfg.get("cost") else {}
    assert isinstance(cost_options, dict)
    marks = _designated(cfg, env, size)
    if marks is None:
        cost = goal_cost(visual, goal, goal_proprio, **{str(k): v for k, v in cost_options.items()})
    else:
        from wm_planning.costs_visual import DesignatedPixelCost

        if "pixel_dists" not in model.provides:
            raise ValueError(
                f"designated pixels need a model that predicts pixel distributions "
                f"(visual_foresight), not {type(model).__name__}"
            )
        cost = DesignatedPixelCost(
            torch.as_tensor(marks[1], dtype=torch.float32),
            every_step=bool(cost_options.get("every_step", False)),
        )
        goal = _draw_marks(goal, marks[1])
    # a user's marks are carried by the model through the actions executed since the last plan
    carried = marks is not None and not bool(cfg.designated.keypoints)
    last_state: Any = None
    executed: list[np.ndarray] = []
    skip = int(getattr(model.config, "frameskip", 1))
    history = int(getattr(model.config, "history", 1))
    pcfg = OmegaConf.to_container(cfg.planner, resolve=True)
    assert isinstance(pcfg, dict)
    from wm_planning.training.visual_checkpoint import planning_box

    low, high = planning_box(
        str(cfg.action_box),
        box,
        np.asarray(env.spec.action_low, dtype=float),
        np.asarray(env.spec.action_high, dtype=float),
    )
    planner = planners.from_config(
        {str(k): v for k, v in pcfg.items()},
        horizon=int(cfg.plan_blocks) * skip,
        action_low=low,
        action_high=high,
    )
    # Plans start on model-step boundaries (the state is built from frames `skip` steps apart).
    every = skip if cfg.get("replan_every") is None else int(cfg.replan_every)
    if every < 1 or every % skip or every > int(cfg.plan_blocks) * skip:
        raise ValueError(
            f"replan_every={every} must be a multiple of the model's frameskip {skip} and at most "
            f"the horizon plan_blocks x frameskip = {int(cfg.plan_blocks) * skip}"
        )
    ctrl = Controller(planner, generator=torch.Generator().manual_seed(seed), replan_every=every)
    audit_k = int(cfg.get("audit", 0) or 0)
    auditor: Any = None
    audits: list[dict[str, Any]] = []
    if audit_k:
        from wm_planning.models.rendered_dynamics import RenderedDynamics

        if cfg.get("oracle") or marks is not None:
            raise ValueError("audit=K checks a learned model's goal-image plans: no oracle=true, "
                             "no designated pixels")  # fmt: skip
        if audit_k < 3:
            raise ValueError(f"audit={audit_k}: rank correlations need at least 3 candidates")
        auditor = RenderedDynamics(visual, env)
    steps = int(cfg.steps) if cfg.steps is not None else env.spec.episode_length
    frames_hist, proprio_hist = [obs["pixels"]], [obs["proprio"]]
    blocks: list[np.ndarray] = []
    block: list[np.ndarray] = []
    imagined = np.zeros_like(goal)
    video_frames: list[Any] = []  # imageio wants a plain list
    times: list[float] = []
    scale = int(cfg.video_scale)
    d0, _ = env.evaluate()
    recorder = None
    if cfg.get("record"):
        from wm_planning.data import EpisodeRecorder

        recorder = EpisodeRecorder(obs)
    trace: list[float] = []  # distance after every env step: converging, stalled or oscillating
    # Mahalanobis distance of the observed proprioception to the training data's, every step
    support_trace: list[float] = []
    with torch.no_grad():
        n = 0
        for _ in range(steps):
            n += 1
            if ctrl.queue.shape[0] == 0:
                enc: dict[str, Any] = {
                    "pixels": np.stack(frames_hist[-history:]),
                    "proprio": np.stack(proprio_hist[-history:]),
                    "actions": np.stack(blocks[-(history - 1) :])
                    if blocks and history > 1
                    else None,
                    "context": frames_hist[0],
                }
                if carried and last_state is not None:
                    past = torch.as_tensor(np.stack(executed), dtype=torch.float32)[None]
                    enc["pixel_dists"] = model.rollout(last_state, past).extras["pixel_dists"][
                        0, -1
                    ]
                    executed.clear()
                elif carried and marks is not None:
                    enc["designated_pixels"] = marks[0]
                elif marks is not None:  # keypoints, re-located: the simulator as tracker
                    enc["designated_pixels"] = _in_frame(
                        env.project(env.keypoints(), None, size),  # type: ignore[attr-defined]
                        size,
                    )
                state = model.encode(enc)
                last_state = state
                objective = costs.make_objective(model, state, cost)
                if joint_support is not None:  # built only for support_weight > 0
                    objective = joint_support_penalty(
                        objective, env, joint_support, float(cfg.support_weight)
                    )
                seen: list[tuple[Tensor, Tensor]] = []
                if auditor is not None:
                    objective = _recording(objective, seen)
                if profile and not times:  # where one plan's time goes (first plan only)
                    with torch.profiler.profile() as prof:
                        result = ctrl.replan(objective)
                    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)
                    print(f"profile of one plan (seed {seed}):\n{table}", flush=True)
                else:
                    result = ctrl.replan(objective)
                assert ctrl.plan_time_s is not None
                times.append(ctrl.plan_time_s)
                if auditor is not None:  # outside the timed plan
                    audits.append(
                        {"step": n - 1, **_audit(model, auditor, state, cost, seen, audit_k)}
                    )
                roll = model.rollout(state, result.actions[None].clamp(-1, 1))
                if roll.frames is not None:  # the imagined end of the plan
                    last = roll.frames[0, -1].permute(1, 2, 0).clamp(0, 1)
                    imagined = (last * 255).byte().cpu().numpy()
            action = ctrl.act(objective)
            if carried:
                executed.append(action.numpy())
            obs, reward, terminated, truncated, info = env.step(action.numpy())
            if recorder is not None:
                recorder.add(action.numpy(), obs, reward, terminated, truncated, info)
            trace.append(float(env.evaluate()[0]))
            if support is not None:
                support_trace.append(float(support.distance(obs["proprio"])))
            block.append(action.numpy())
            if len(block) == skip:
                blocks.append(np.concatenate(block))
                block = []
                frames_hist.append(obs["pixels"])
                proprio_hist.append(obs["proprio"])
            if video is not None:
                panels = [obs["pixels"], goal, imagined]
                video_frames.append(np.concatenate([_panel(p, scale) for p in panels], 1))
            if truncated:
                break
    distance, success = env.evaluate()
    if video is not None:
        import imageio.v2 as imageio

        video.parent.mkdir(parents=True, exist_ok=True)
        imageio.mimwrite(
            video, video_frames, fps=max(1, round(1 / env.spec.control_dt)), macro_block_size=8
        )
    env.close()
    out: dict[str, Any] = {
        "seed": seed,
        "success": bool(success),
        "distance": float(distance),
        "start_distance": float(d0),
        "plan_times": times,
        "steps": n,
        "distance_trace": trace,
    }
    if audits:
        out["audit"] = audits
    if recorder is not None:  # popped before the JSON is written
        out["_record"] = (recorder.episode(seed), env.spec)
    if support is not None:
        left = [i + 1 for i, d in enumerate(support_trace) if d > support.radius]
        out["support_trace"] = support_trace
        out["left_support_step"] = left[0] if left else None  # env steps taken when it left
    return out


def _recording(
    objective: Callable[[Tensor], Tensor], seen: list[tuple[Tensor, Tensor]]
) -> Callable[[Tensor], Tensor]:
    """``objective`` that also appends every batch it scores (actions ``B×H×A``, costs ``B``)."""

    def recorded(actions: Tensor) -> Tensor:
        c = objective(actions)
        seen.append((actions.detach().clone(), c.detach().clone()))
        return c

    return recorded


def audit_candidates(costs: Tensor, k: int) -> Tensor:
    """Indices of ``k`` of the ``N`` candidates spread evenly over their cost ranking: the best
    (the planner's pick), the worst and ranks between (``N < k``: all of them)."""
    order = torch.argsort(costs)
    if costs.numel() <= k:
        return order
    ranks = torch.linspace(0, costs.numel() - 1, k).round().long().unique()
    return order[ranks]


def _audit(
    model: Any, auditor: Any, state: Any, cost: Any, seen: list[tuple[Tensor, Tensor]], k: int
) -> dict[str, Any]:
    """Score ``k`` of one plan's candidates (:func:`audit_candidates`) on the model and on the
    simulator with the goal cost alone (no support penalty): how well the model ranked them."""
    from wm_planning.commands.probe import rank_metrics

    actions, planned = torch.cat([a for a, _ in seen]), torch.cat([c for _, c in seen])
    finite = planned.isfinite()
    cand = actions[finite][audit_candidates(planned[finite], k)]  # inside the planning box
    with torch.no_grad():
        model_cost = cost(model.rollout(state, cand)).double().numpy()
        true_cost = cost(auditor.rollout(auditor.encode({}), cand)).double().numpy()
    return {
        **rank_metrics(model_cost, true_cost),
        "model_costs": model_cost.tolist(),
        "true_costs": true_cost.tolist(),
    }


def audit_summary(results: list[dict[str, Any]], edges: tuple[int, ...]) -> list[dict[str, Any]]:
    """Per-plan audit metrics pooled by the env step of the plan, in bins ``[e_i, e_i+1)``."""
    plans = [a for r in results for a in r.get("audit", [])]
    from wm_planning.commands.probe import pool_rank_metrics

    rows = []
    for lo, hi in zip(edges, (*edges[1:], None), strict=True):
        sel = [a for a in plans if a["step"] >= lo and (hi is None or a["step"] < hi)]
        if sel:
            rows.append({"steps": [lo, hi], "plans": len(sel), **pool_rank_metrics(sel)})
    return rows


def joint_support_penalty(
    objective: Callable[[Tensor], Tensor], env: Any, support: Any, weight: float
) -> Callable[[Tensor], Tensor]:
    """``objective`` plus ``weight`` × the mean over the plan of how far its commanded joint
    targets go beyond the training data's joint positions (``support.excess``, squared
    Mahalanobis excess over the data's radius). The targets follow from the current target and
    the actions exactly (``env.controls``, the env's own action-to-target map), as they do on a
    robot that knows its own commands: nothing is predicted. Sampling planners only (no
    gradient flows through it)."""
    q0 = np.array(env.q_ref, dtype=float, copy=True)

    def penalised(actions: Tensor) -> Tensor:
        a = actions.detach().clamp(-1, 1).cpu().double().numpy()
        _, q = env.controls(np.repeat(q0[None], a.shape[0], 0), a)  # B×H×n targets
        pen = torch.as_tensor(support.excess(q).mean(1), dtype=actions.dtype)
        return objective(actions) + weight * pen.to(actions.device)

    return penalised


def _run_episodes(
    cfg: Any, episodes: list[int], support: Any = None, joint_support: Any = None
) -> list[dict[str, Any]]:
    """Run episodes ``i`` (seed ``cfg.seed + i``) in this process; prints a line per episode."""
    from wm_planning.training.visual_checkpoint import load_visual_checkpoint

    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    ck = load_visual_checkpoint(str(cfg.checkpoint), str(cfg.device))
    model, box = ck.model, ck.action_box
    if str(cfg.action_box) == "data" and box is None and episodes[:1] == [0]:
        print(f"{cfg.checkpoint} records no training-action box: planning in the env's box")
    results = []
    for i in episodes:
        video = None
        if cfg.video and i < int(cfg.video_episodes):
            v = Path(str(cfg.video))
            video = v if i == 0 else v.with_name(f"{v.stem}_{i}{v.suffix}")
        profile = bool(cfg.profile) and i == 0
        r = run_goal_episode(
            cfg, model, int(cfg.seed) + i, video, profile, box, support, joint_support
        )
        results.append(r)
        left = r.get("left_support_step")
        print(
            f"  seed {r['seed']}: success={r['success']} distance {r['start_distance']:.3f} -> "
            f"{r['distance']:.3f} ({r['steps']} steps)"
            f"{f', left the data at step {left}' if left else ''}"
            f"{' video ' + str(video) if video else ''}",
            flush=True,
        )
    return results


def _worker(
    container: dict[str, Any],
    episodes: list[int],
    support: Any = None,
    joint_support: Any = None,
) -> list[dict[str, Any]]:
    """One ``workers=N`` process: its share of the episodes, on the resolved config."""
    from omegaconf import OmegaConf

    return _run_episodes(OmegaConf.create(container), episodes, support, joint_support)


@command("goal", help="reach a goal image with a visual world model (MPC); side-by-side video")
def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    from omegaconf import OmegaConf

    from wm_planning.config import compose

    cfg = compose("goal", argv)
    seeds = [int(cfg.seed) + i for i in range(int(cfg.episodes))]
    support = joint_support = None
    weight = float(cfg.get("support_weight", 0.0))
    if weight < 0 or (weight and not cfg.held_out_from):
        raise ValueError(
            f"support_weight={weight}: needs >= 0, and held_out_from= (the training data whose "
            "joint positions plans keep to)"
        )
    if weight:
        from wm_planning import planners

        if planners.get(str(cfg.planner.name)).needs_gradients:
            raise ValueError(
                "support_weight works with sampling planners (no gradient flows through it)"
            )
    if cfg.held_out_from:
        from omegaconf import ListConfig

        from wm_planning.commands.train_visual import open_datasets

        held = cfg.held_out_from  # a directory, or [dir, dir] (what the model was trained on)
        dirs = [str(d) for d in held] if isinstance(held, ListConfig) else str(held)
        datasets = open_datasets(dirs)
        seen = {int(e["seed"]) for ds in datasets for e in ds.meta["episodes"]}
        overlap = sorted(seen.intersection(seeds))
        if overlap:
            raise SystemExit(
                f"wm-plan goal: seeds {overlap[:10]} are training episodes of {cfg.held_out_from};"
                " pick seed= outside them"
            )
        if "proprio" in datasets[0].meta["spec"]["obs_shapes"]:
            from wm_planning.data.support import proprio_support

            support = proprio_support(datasets)
            if weight:
                from wm_planning import envs

                probe_env = envs.make(str(cfg.env))
                n_joints = int(probe_env.robot.n_joints)  # type: ignore[attr-defined]
                probe_env.close()
                joint_support = proprio_support(datasets, columns=n_joints)
        elif weight:
            raise ValueError("support_weight needs training data with proprioception")
    if cfg.get("record") and (Path(str(cfg.record)) / "meta.json").exists():
        raise FileExistsError(f"record={cfg.record} already holds a dataset: pick a new directory")
    workers = int(cfg.workers)
    if workers < 1:
        raise ValueError(f"workers={workers}: need at least one process")
    t0 = time.perf_counter()
    episodes = list(range(int(cfg.episodes)))
    if workers == 1:
        results = _run_episodes(cfg, episodes, support, joint_support)
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        # Episode i goes to worker i mod N: each worker gets a spread of seeds, so one slow
        # stretch of seeds does not sit in one process. Spawn: no forked torch/EGL state.
        chunks = [episodes[w::workers] for w in range(workers) if episodes[w::workers]]
        container = OmegaConf.to_container(cfg, resolve=True)
        with ProcessPoolExecutor(len(chunks), mp_context=mp.get_context("spawn")) as pool:
            n = len(chunks)
            parts = list(
                pool.map(_worker, [container] * n, chunks, [support] * n, [joint_support] * n)
            )
        results = sorted((r for part in parts for r in part), key=lambda r: int(r["seed"]))
    records = [r.pop("_record") for r in results if "_record" in r]
    if records:
        from wm_planning.data import DatasetWriter

        writer = DatasetWriter(
            Path(str(cfg.record)), str(cfg.env), records[0][1],
            config=OmegaConf.to_container(cfg, resolve=True),  # type: ignore[arg-type]
        )  # fmt: skip
        for episode, _ in records:
            writer.add(episode)
        print(f"recorded {len(records)} episodes in {cfg.record}")
    from wm_planning.eval.stats import wilson

    ok = sum(r["success"] for r in results)
    ms = np.asarray([t for r in results for t in r["plan_times"]]) * 1e3
    lo, hi = wilson(ok, len(results))
    summary = {
        "checkpoint": str(cfg.checkpoint),
        "env": str(cfg.env),
        "episodes": len(results),
        "success": ok,
        "success_rate": ok / len(results),
        "success_ci95": [lo, hi],
        "mean_final_distance": float(np.mean([r["distance"] for r in results])),
        "mean_start_distance": float(np.mean([r["start_distance"] for r in results])),
        "plan_ms_median": float(np.median(ms)),
        "plan_ms_p90": float(np.percentile(ms, 90)),
        "plans": len(ms),
        "wall_s": time.perf_counter() - t0,
        "threads": int(cfg.threads) if cfg.threads else torch.get_num_threads(),
        "workers": workers,  # plan times were measured beside workers - 1 other processes
        "action_box": str(cfg.action_box),
        "oracle": bool(cfg.get("oracle", False)),
        "support_weight": weight,
    }
    if joint_support is not None:
        summary["joint_support_radius"] = joint_support.radius
    if int(cfg.get("audit", 0) or 0):
        summary["audit"] = audit_summary(results, (0, 20, 40, 80))
        for row in summary["audit"]:
            first, last = row["steps"]
            print(
                f"  audit, plans at steps [{first}, {last if last is not None else 'end'}): "
                f"{row['plans']} plans, Spearman median {row['spearman_median']:.2f}, regret "
                f"median {row['regret_median']:.2f} mean {row['regret_mean']:.2f}, model's pick "
                f"the true best {100 * row['picked_best']:.0f} %"
            )
    if support is not None:  # episodes whose arm left the training data's proprioception
        left = [r for r in results if r["left_support_step"] is not None]
        summary["support"] = {
            "radius": support.radius,
            "quantile": support.quantile,
            "samples": support.count,
            "left": len(left),
            "left_and_failed": sum(not r["success"] for r in left),
            "failed": len(results) - ok,
        }
    print(
        f"{cfg.env}: success {ok}/{len(results)} (Wilson 95% [{lo:.2f}, {hi:.2f}]), mean final "
        f"distance {summary['mean_final_distance']:.3f} (start "
        f"{summary['mean_start_distance']:.3f}), plan time per control step: median "
        f"{summary['plan_ms_median']:.0f} ms, p90 {summary['plan_ms_p90']:.0f} ms ({len(ms)} "
        f"plans, {summary['threads']} threads x {workers} workers), {summary['wall_s']:.0f} s wall"
    )
    if "support" in summary:
        sp = summary["support"]
        print(
            f"left the training data's proprioception (Mahalanobis > {sp['radius']:.2f}, its "
            f"{sp['quantile']:.1%}) in {sp['left']}/{len(results)} episodes; "
            f"{sp['left_and_failed']} of the {sp['failed']} failures had"
        )
    if cfg.results:
        out = Path(str(cfg.results))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"summary": summary, "episodes": results}, indent=1))
        print(f"wrote {out}")
    return 0
