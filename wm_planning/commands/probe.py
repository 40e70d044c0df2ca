"""``wm-plan probe``: how well a visual world model predicts, open loop, on held-out starts.

    wm-plan probe checkpoint=runs/dino.pt env=planar-goal_reach seed=2000 episodes=8 \\
        sequences=16 blocks=3 action_scale=1.0 [results=probe.json]

From each episode's start state (seeds ``seed … seed+episodes-1``), ``sequences`` smooth random
action sequences (a clipped random walk, scaled by ``action_scale``: small values probe the fine
motions a planner makes near its goal) are run both in the simulator and through the model. Per
model step (``frameskip`` env steps) it prints the model's error against the truth next to the
error of "nothing moves" (the start observation as the prediction):

* DINO-WM: the mean squared error of the predicted patch tokens to the encoder's tokens of the
  true frame, and, with proprioception, the largest joint error (rad) of the predicted proprio
  embedding mapped back through the (linear) proprio encoder's pseudo-inverse;
* visual foresight: the per-pixel mean squared error of the predicted frame.

A model whose error is not well below "nothing moves" at the motion sizes a planner uses cannot
steer precisely, whatever the planner.
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


@singledispatch
def probe_model(model: Any, obs: dict[str, Any], actions: np.ndarray, frames: np.ndarray,
                proprio: np.ndarray, n_joints: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:  # fmt: skip
    """Per model family (registered in :func:`_register`): start obs, actions ``K×H×A``, true
    frames ``K×M×H×W×3`` and proprio ``K×M×P`` -> {metric: (model error ``K×M``, nothing-moves
    error ``K×M``)}."""
    raise TypeError(f"no probe for {type(model).__name__}")


def _register() -> None:
    from wm_planning.models.dino_wm import DinoWM, pixels_to_float
    from wm_planning.models.visual_foresight import CDNA

    @probe_model.register(DinoWM)
    def _(model: DinoWM, obs: dict[str, Any], actions: np.ndarray, frames: np.ndarray,
          proprio: np.ndarray, n_joints: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:  # fmt: skip
        k, m = frames.shape[:2]
        state = model.encode({"pixels": obs["pixels"], "proprio": obs.get("proprio")})
        with torch.no_grad():
            roll = model.rollout(
                state, torch.as_tensor(actions), frozenset({"latents", "proprio_latents"})
            )
            true = model.encode_images(
                pixels_to_float(torch.as_tensor(frames.reshape(k * m, *frames.shape[2:])))
            ).reshape(k, m, -1)
        now = state.tokens[-1].flatten()
        assert roll.latents is not None
        out = {
            "token_mse": (
                (roll.latents - true).pow(2).mean(-1).numpy(),
                (now[None, None] - true).pow(2).mean(-1).numpy(),
            )
        }
        if model.proprio_dim:
            w = model.proprio_encoder.weight.detach().double()
            b = model.proprio_encoder.bias.detach().double()
            pinv = torch.linalg.pinv(w)  # Ep×Pp embedding is injective for Ep >= Pp
            pred = ((roll.extras["proprio_latents"].double() - b) @ pinv.T).numpy()
            q0 = np.asarray(obs["proprio"])[:n_joints]
            out["joint_err_rad"] = (
                np.abs(pred[..., :n_joints] - proprio[..., :n_joints]).max(-1),
                np.abs(q0 - proprio[..., :n_joints]).max(-1),
            )
        return out

    @probe_model.register(CDNA)
    def _(model: CDNA, obs: dict[str, Any], actions: np.ndarray, frames: np.ndarray,
          proprio: np.ndarray, n_joints: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:  # fmt: skip
        state = model.encode({"pixels": obs["pixels"]})
        with torch.no_grad():
            roll = model.rollout(state, torch.as_tensor(actions))
        assert roll.frames is not None
        s = actions.shape[1] // frames.shape[1]
        pred = roll.frames[:, s - 1 :: s].permute(0, 1, 3, 4, 2).numpy()  # K×M×H×W×3
        true = frames.astype(np.float32) / 255.0
        now = np.asarray(obs["pixels"], np.float32) / 255.0
        return {
            "pixel_mse": (
                ((pred - true) ** 2).mean((2, 3, 4)),
                ((now[None, None] - true) ** 2).mean((2, 3, 4)),
            )
        }


def run_probe(cfg: Any) -> dict[str, Any]:
    from wm_planning import envs
    from wm_planning.training.visual_checkpoint import load_checkpoint

    _register()
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    model = load_checkpoint(str(cfg.checkpoint), str(cfg.device))
    size = (int(model.obs_shape[0]), int(model.obs_shape[1]))
    skip = int(getattr(model.config, "frameskip", 1))
    blocks, scale = int(cfg.blocks), float(cfg.action_scale)
    if blocks < 1 or not 0 < scale <= 1:
        raise ValueError(f"need blocks >= 1 and 0 < action_scale <= 1, got {blocks}, {scale}")
    env = envs.make(str(cfg.env), pixels=True, image_size=size)
    rng = np.random.default_rng(int(cfg.seed))
    n_joints = int(getattr(getattr(env, "robot", None), "n_joints", 0))
    errors: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
    t0 = time.perf_counter()
    for i in range(int(cfg.episodes)):
        obs = env.reset(seed=int(cfg.seed) + i)
        start = env.get_state()  # type: ignore[attr-defined]
        k, h = int(cfg.sequences), blocks * skip
        actions = random_walks(rng, k, h, len(env.spec.action_low), scale)
        frames = np.empty((k, blocks, *size, 3), np.uint8)
        prop = np.zeros((k, blocks, len(obs.get("proprio", ()))), np.float32)
        for j in range(k):
            env.set_state(start)  # type: ignore[attr-defined]
            for t in range(h):
                o, *_ = env.step(actions[j, t])
                if (t + 1) % skip == 0:
                    frames[j, t // skip] = o["pixels"]
                    if "proprio" in o:
                        prop[j, t // skip] = o["proprio"]
        env.set_state(start)  # type: ignore[attr-defined]
        for name, (err, still) in probe_model(model, obs, actions, frames, prop, n_joints).items():
            errors.setdefault(name, ([], []))
            errors[name][0].append(err)
            errors[name][1].append(still)
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
    return {
        "checkpoint": str(cfg.checkpoint),
        "env": str(cfg.env),
        "seeds": [int(cfg.seed), int(cfg.seed) + int(cfg.episodes) - 1],
        "sequences": int(cfg.sequences),
        "action_scale": scale,
        "metrics": table,
        "wall_s": time.perf_counter() - t0,
    }


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
        f"{out['sequences']} sequences each, action scale {out['action_scale']:g}:"
    )
    for name, rows in out["metrics"].items():
        print(f"| {name} | env steps | model median | model p90 | nothing moves (median) |")
        print("|---|---|---|---|---|")
        for r in rows:
            print(
                f"| block {r['block']} | {r['env_steps']} | {r['model_median']:.4f} | "
                f"{r['model_p90']:.4f} | {r['still_median']:.4f} |"
            )
    if cfg.results:
        Path(str(cfg.results)).parent.mkdir(parents=True, exist_ok=True)
        Path(str(cfg.results)).write_text(json.dumps(out, indent=1))
        print(f"wrote {cfg.results}")
    return 0
