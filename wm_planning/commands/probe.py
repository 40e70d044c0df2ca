"""``wm-plan probe``: how well a visual world model predicts, open loop, on held-out starts.

    wm-plan probe checkpoint=runs/dino.pt env=planar-goal_reach seed=2000 episodes=8 \\
        sequences=16 blocks=3 action_scale=1.0 [results=probe.json]

From each episode's start state (seeds ``seed … seed+episodes-1``), ``sequences`` smooth random
action sequences (a clipped random walk, scaled by ``action_scale``: small values probe the fine
motions a planner makes near its goal) are run both in the simulator and through the model. Per
model step (``frameskip`` env steps) it prints the model's error against the truth next to the
error of "nothing moves" (the start observation as the prediction):

* DINO-WM: the mean squared error of the predicted patch tokens to the encoder's tokens of the
  true frame; with proprioception, that of the predicted proprio embedding and, when the
  embedding is at least as wide as the proprioception (so that it can be inverted), the largest
  joint error (rad) of the prediction mapped back through the (linear) proprio encoder's
  pseudo-inverse;
* visual foresight: the per-pixel mean squared error of the predicted frame.

A model whose error is not well below "nothing moves" at the motion sizes a planner uses cannot
steer precisely, whatever the planner.

Sequences from a data policy, from mid-episode starts, and how well the model ranks them:

    wm-plan probe checkpoint=runs/dino_conv_push_res.pt env=panda-push seed=1000 episodes=10 \
        sequences=32 blocks=3 policy=scripted_push start_step=20 rank=true \
        cost.proprio_weight=0 cost.every_step=true

``policy``: each sequence is that data policy's own closed-loop actions from the start (reset
with its own seed, so scripted pushes go in different directions, some onto the target and some
not). ``start_step``: the episode is first advanced that many steps by the policy (seeded by the
episode), and the model is given the frames and action blocks before it, as while planning.
``rank``: the goal cost the planner would use (``cost.*`` as in ``wm-plan goal``) is computed on
the model's predictions and on the simulator's frames (encoded by the same model) for the same
sequences, over the first ``m`` blocks for each planning horizon ``m = 1..blocks``. Per start it
reports the rank correlation (Spearman) of the two, and the regret of planning on the model:
the true cost of the model's best sequence minus the true best, as a fraction of the spread
between the true median and the true best (0: the model picks the best sequence; 1: no better
than a typical one). The JSON keeps every sequence's full-horizon costs.
"""

from __future__ import annotations

import json
import time
from functools import singledispatch
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wm_planning.cli import command
from wm_planning.models.base import Rollout


def random_walks(
    rng: np.random.Generator, n: int, steps: int, action_dim: int, scale: float, step: float = 0.4
) -> np.ndarray:
    """``n×steps×A`` actions in [-scale, scale]: a clipped random walk per sequence."""
    out = np.empty((n, steps, action_dim), np.float32)
    a = rng.uniform(-1, 1, (n, action_dim))
    for t in range(steps):
        a = np.clip(a + rng.normal(0, step, a.shape), -1, 1)
        out[:, t] = a * scale
    return out


Probed = tuple[dict[str, tuple[np.ndarray, np.ndarray]], Rollout, Rollout]


def _last(x: Any, frame_dims: int) -> np.ndarray:
    """The newest frame of a history (``k×…``), or the frame itself."""
    x = np.asarray(x)
    return x[-1] if x.ndim > frame_dims else x


@singledispatch
def probe_model(model: Any, obs: dict[str, Any], actions: np.ndarray, frames: np.ndarray,
                proprio: np.ndarray, n_joints: int) -> Probed:  # fmt: skip
    """Per model family (registered in :func:`_register`): start obs (the last ``history``
    frames, oldest first, when the model keeps several), actions ``K×H×A``, true frames
    ``K×M×H×W×3`` and proprio ``K×M×P`` -> {metric: (model error ``K×M``, nothing-moves error
    ``K×M``)}, and the predicted and true :class:`Rollout` (what a goal cost scores)."""
    raise TypeError(f"no probe for {type(model).__name__}")


def _register() -> None:
    from wm_planning.models.dino_wm import DinoWM, pixels_to_float
    from wm_planning.models.visual_foresight import CDNA

    @probe_model.register(DinoWM)
    def _(model: DinoWM, obs: dict[str, Any], actions: np.ndarray, frames: np.ndarray,
          proprio: np.ndarray, n_joints: int) -> Probed:  # fmt: skip
        k, m = frames.shape[:2]
        state = model.encode(
            {"pixels": obs["pixels"], "proprio": obs.get("proprio"), "actions": obs.get("actions")}
        )
        with torch.no_grad():
            roll = model.rollout(
                state, torch.as_tensor(actions), frozenset({"latents", "proprio_latents"})
            )
            true = model.encode_images(
                pixels_to_float(torch.as_tensor(frames.reshape(k * m, *frames.shape[2:])))
            ).reshape(k, m, -1)
            true_p = model.embed_proprio(
                torch.as_tensor(proprio) if model.proprio_dim else None, (k, m)
            )
        now = state.tokens[-1].flatten()
        assert roll.latents is not None
        out = {
            "token_mse": (
                (roll.latents - true).pow(2).mean(-1).numpy(),
                (now[None, None] - true).pow(2).mean(-1).numpy(),
            )
        }
        if model.proprio_dim:
            out["proprio_emb_mse"] = (
                (roll.extras["proprio_latents"] - true_p).pow(2).mean(-1).numpy(),
                (state.proprio[-1][None, None] - true_p).pow(2).mean(-1).numpy(),
            )
        if model.proprio_dim and model.cfg.proprio_emb_dim >= model.proprio_dim:
            w = model.proprio_encoder.weight.detach().double()
            b = model.proprio_encoder.bias.detach().double()
            # only then is the Ep×Pp embedding injective: its pseudo-inverse recovers the joints
            pinv = torch.linalg.pinv(w)
            pred = ((roll.extras["proprio_latents"].double() - b) @ pinv.T).numpy()
            q0 = _last(obs["proprio"], 1)[:n_joints]
            out["joint_err_rad"] = (
                np.abs(pred[..., :n_joints] - proprio[..., :n_joints]).max(-1),
                np.abs(q0 - proprio[..., :n_joints]).max(-1),
            )
        return out, roll, Rollout(latents=true, extras={"proprio_latents": true_p})

    @probe_model.register(CDNA)
    def _(model: CDNA, obs: dict[str, Any], actions: np.ndarray, frames: np.ndarray,
          proprio: np.ndarray, n_joints: int) -> Probed:  # fmt: skip
        state = model.encode({"pixels": obs["pixels"], "context": obs.get("context")})
        with torch.no_grad():
            roll = model.rollout(state, torch.as_tensor(actions))
        assert roll.frames is not None
        s = actions.shape[1] // frames.shape[1]
        pred = roll.frames[:, s - 1 :: s].permute(0, 1, 3, 4, 2).numpy()  # K×M×H×W×3
        true = frames.astype(np.float32) / 255.0
        now = _last(obs["pixels"], 3).astype(np.float32) / 255.0
        errors = {
            "pixel_mse": (
                ((pred - true) ** 2).mean((2, 3, 4)),
                ((now[None, None] - true) ** 2).mean((2, 3, 4)),
            )
        }
        # the goal-pixel cost scores every env step's frame: compare like with like
        ends = Rollout(frames=roll.frames[:, s - 1 :: s])
        return errors, ends, Rollout(frames=torch.as_tensor(true).permute(0, 1, 4, 2, 3))


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Rank correlation of two ``K`` vectors (ties broken by order; ``nan`` if one is constant)."""
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def rank_metrics(model_cost: np.ndarray, true_cost: np.ndarray) -> dict[str, float]:
    """``K`` goal costs of the same sequences, predicted and true -> Spearman correlation and the
    regret of the model's pick (see the module docstring)."""
    best, median = float(true_cost.min()), float(np.median(true_cost))
    picked = float(true_cost[int(np.argmin(model_cost))])
    spread = median - best
    return {
        "spearman": spearman(model_cost, true_cost),
        "regret": (picked - best) / spread if spread > 0 else 0.0,
        "picked_best": float(picked == best),
    }


def pool_rank_metrics(rows: list[dict[str, float]]) -> dict[str, float]:
    """:func:`rank_metrics` of several starts (or plans) pooled: the median Spearman (``nan``
    where one side's costs all tie is left out), the median and mean regret, and how often the
    best was picked."""
    regret = [r["regret"] for r in rows]
    return {
        "spearman_median": float(np.nanmedian([r["spearman"] for r in rows])),
        "regret_median": float(np.median(regret)),
        "regret_mean": float(np.mean(regret)),
        "picked_best": float(np.mean([r["picked_best"] for r in rows])),
    }


def _at_horizon(per_start: dict[str, float], m: int) -> dict[str, float]:
    """One start's :func:`rank_metrics` over the first ``m`` blocks (keys ``name@m``)."""
    return {k: per_start[f"{k}@{m}"] for k in ("spearman", "regret", "picked_best")}


def first_blocks(roll: Rollout, m: int) -> Rollout:
    """The rollout's first ``m`` model steps (its per-step fields and extras cut to ``m``)."""
    cut = {f: None if v is None else v[:, :m] for f, v in
           (("latents", roll.latents), ("rewards", roll.rewards), ("frames", roll.frames),
            ("uncertainty", roll.uncertainty))}  # fmt: skip
    return Rollout(**cut, extras={k: v[:, :m] for k, v in roll.extras.items()})


def _advance(env: Any, policy: Any, obs: dict[str, Any], steps: int, skip: int, history: int,
             seed: int) -> dict[str, Any]:  # fmt: skip
    """Run ``steps`` policy steps from the reset; the obs a planner's model would get then: the
    last ``history`` frames ``skip`` steps apart, their proprio, the action blocks between them,
    and the episode's first frame (``context``)."""
    policy.reset(seed)
    frames, prop, acts = [obs["pixels"]], [obs.get("proprio", np.zeros(0))], []
    for _ in range(steps):
        a = policy.act(obs)
        obs, *_ = env.step(a)
        acts.append(a)
        frames.append(obs["pixels"])
        prop.append(obs.get("proprio", np.zeros(0)))
    idx = list(range(steps, -1, -skip))[:history][::-1]  # frame indices, oldest first
    blocks = [np.concatenate(acts[i : i + skip]) for i in idx[:-1]]
    out = {"pixels": np.stack([frames[i] for i in idx]), "context": frames[0]}
    if "proprio" in obs:
        out["proprio"] = np.stack([prop[i] for i in idx]).astype(np.float32)
    if blocks:
        out["actions"] = np.stack(blocks).astype(np.float32)
    return out


def run_probe(cfg: Any) -> dict[str, Any]:
    from wm_planning import envs
    from wm_planning.costs_visual import goal_cost
    from wm_planning.data import policies
    from wm_planning.training.visual_checkpoint import load_checkpoint

    _register()
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    model = load_checkpoint(str(cfg.checkpoint), str(cfg.device))
    size = (int(model.obs_shape[0]), int(model.obs_shape[1]))
    skip = int(getattr(model.config, "frameskip", 1))
    history = int(getattr(model.config, "history", 1))
    blocks, scale = int(cfg.blocks), float(cfg.action_scale)
    start_step, rank = int(cfg.get("start_step", 0)), bool(cfg.get("rank", False))
    if blocks < 1 or not 0 < scale <= 1 or start_step < 0:
        raise ValueError(
            f"need blocks >= 1, 0 < action_scale <= 1, start_step >= 0; got {blocks}, {scale}, "
            f"{start_step}"
        )
    policy_name = cfg.get("policy")
    if start_step and not policy_name:
        raise ValueError("start_step > 0 needs a policy to get there (e.g. policy=scripted_push)")
    env = envs.make(str(cfg.env), pixels=True, image_size=size)
    options = dict(cfg.get("policy_options") or {})
    policy = policies.make(str(policy_name), env, **options) if policy_name else None
    cost_options = {str(k): v for k, v in dict(cfg.get("cost") or {}).items()}
    rng = np.random.default_rng(int(cfg.seed))
    n_joints = int(getattr(getattr(env, "robot", None), "n_joints", 0))
    errors: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
    ranks: list[dict[str, float]] = []
    costs: list[tuple[np.ndarray, np.ndarray]] = []  # per start: model's and true, K each
    t0 = time.perf_counter()
    for i in range(int(cfg.episodes)):
        seed = int(cfg.seed) + i
        obs = env.reset(seed=seed)
        if policy is not None and start_step:
            model_obs = _advance(env, policy, obs, start_step, skip, history, seed)
            obs = {"pixels": model_obs["pixels"][-1], **(
                {"proprio": model_obs["proprio"][-1]} if "proprio" in model_obs else {})}  # fmt: skip
        else:
            model_obs = obs
        start = env.get_state()  # type: ignore[attr-defined]
        k, h, a_dim = int(cfg.sequences), blocks * skip, len(env.spec.action_low)
        if policy is None:
            actions = random_walks(rng, k, h, a_dim, scale)
        else:  # filled as the policy acts
            actions = np.empty((k, h, a_dim), np.float32)
        frames = np.empty((k, blocks, *size, 3), np.uint8)
        prop = np.zeros((k, blocks, len(obs.get("proprio", ()))), np.float32)
        for j in range(k):
            env.set_state(start)  # type: ignore[attr-defined]
            if policy is not None:
                policy.reset(10_000 * (i + 1) + j)  # each sequence its own seed
            o = obs
            for t in range(h):
                if policy is not None:  # closed loop on the sequence so far, same pass
                    actions[j, t] = policy.act(o)
                o, *_ = env.step(actions[j, t])
                if (t + 1) % skip == 0:
                    frames[j, t // skip] = o["pixels"]
                    if "proprio" in o:
                        prop[j, t // skip] = o["proprio"]
        env.set_state(start)  # type: ignore[attr-defined]
        errs, pred, true = probe_model(model, model_obs, actions, frames, prop, n_joints)
        for name, (err, still) in errs.items():
            errors.setdefault(name, ([], []))
            errors[name][0].append(err)
            errors[name][1].append(still)
        if rank:
            g = env.goal_observation(size)  # type: ignore[attr-defined]
            cost = goal_cost(model, g["pixels"], g.get("proprio"), **cost_options)
            with torch.no_grad():
                costs.append((cost(pred).numpy(), cost(true).numpy()))
                # per planning horizon: the goal cost over the first m blocks only
                ranks.append({
                    f"{name}@{m}": v
                    for m in range(1, blocks + 1)
                    for name, v in rank_metrics(
                        cost(first_blocks(pred, m)).numpy(), cost(first_blocks(true, m)).numpy()
                    ).items()
                })  # fmt: skip
    env.close()
    table: dict[str, Any] = {}
    for name, (err_l, still_l) in errors.items():
        err, still = np.concatenate(err_l), np.concatenate(still_l)
        table[name] = [
            {
                "block": b + 1,
                "env_steps": (b + 1) * skip,
                "model_median": float(np.median(err[:, b])),
                "model_p90": float(np.percentile(err[:, b], 90)),
                "still_median": float(np.median(still[:, b])),
            }
            for b in range(blocks)
        ]
    out: dict[str, Any] = {
        "checkpoint": str(cfg.checkpoint),
        "env": str(cfg.env),
        "seeds": [int(cfg.seed), int(cfg.seed) + int(cfg.episodes) - 1],
        "sequences": int(cfg.sequences),
        "action_scale": scale,
        "policy": None if policy_name is None else str(policy_name),
        "start_step": start_step,
        "metrics": table,
        "wall_s": time.perf_counter() - t0,
    }
    if rank:
        out["ranking"] = {
            "cost": cost_options,
            "per_start": ranks,
            # the full-horizon goal costs of every sequence (e.g. to rank by several models' mean)
            "model_costs": [c[0].tolist() for c in costs],
            "true_costs": [c[1].tolist() for c in costs],
            "by_horizon": [
                {"blocks": m, **pool_rank_metrics([_at_horizon(r, m) for r in ranks])}
                for m in range(1, blocks + 1)
            ],
        }
    return out


@command("probe", help="open-loop prediction error of a visual world model against the simulator")
def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    from wm_planning.config import compose

    cfg = compose("probe", argv)
    out = run_probe(cfg)
    print(
        f"{out['checkpoint']} on {out['env']} seeds {out['seeds'][0]}-{out['seeds'][1]}, "
        f"{out['sequences']} sequences each, "
        + (f"policy {out['policy']}" if out["policy"] else f"action scale {out['action_scale']:g}")
        + (f", from step {out['start_step']}" if out["start_step"] else "")
        + ":"
    )
    for name, rows in out["metrics"].items():
        print(f"| {name} | env steps | model median | model p90 | nothing moves (median) |")
        print("|---|---|---|---|---|")
        for r in rows:
            print(
                f"| block {r['block']} | {r['env_steps']} | {r['model_median']:.4f} | "
                f"{r['model_p90']:.4f} | {r['still_median']:.4f} |"
            )
    if "ranking" in out:
        print(f"ranking by the goal cost {out['ranking']['cost']} over the first m blocks:")
        print("| m | Spearman (median) | regret median | regret mean | best picked |")
        print("|---|---|---|---|---|")
        for r in out["ranking"]["by_horizon"]:
            print(
                f"| {r['blocks']} | {r['spearman_median']:.3f} | {r['regret_median']:.3f} | "
                f"{r['regret_mean']:.3f} | {r['picked_best']:.0%} |"
            )
    if cfg.results:
        Path(str(cfg.results)).parent.mkdir(parents=True, exist_ok=True)
        Path(str(cfg.results)).write_text(json.dumps(out, indent=1))
        print(f"wrote {cfg.results}")
    return 0
