"""How well does an online run's latest checkpoint predict the rewards of its own last episodes?

    python scripts/reward_prediction.py runs/planar-reach-tdmpc2_1m_pixels [--episodes 40]

For every 3rd step (``--every``) of the run's last ``--episodes`` recorded episodes: encode the observation,
take one model step with the action that was executed, and compare the predicted reward with
the reward the env gave. On the reach tasks the reward is minus the end effector's distance to
the target (plus small action and velocity terms), so the mean absolute error is about how far
off, in metres, the model's sense of that distance is. Prints the correlation and that error,
overall and by the true cost (near the goal and further away), with the mean signed error.
"""

from __future__ import annotations

import argparse
import glob
import itertools
import json
from pathlib import Path

import numpy as np
import torch

from wm_planning.training import load_checkpoint


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run")
    ap.add_argument("--episodes", type=int, default=40)
    ap.add_argument("--every", type=int, default=3, help="score every N-th step")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    ck = load_checkpoint(f"{args.run}/checkpoint.pt")
    model = ck.build_model("cpu").eval()
    key = model.obs_key
    files = [
        f"{part}/{e['file']}"
        for part in sorted(glob.glob(f"{args.run}/episodes_*"))
        for e in json.loads(Path(part, "meta.json").read_text())["episodes"]
    ][-args.episodes :]
    pred, true = [], []
    with torch.no_grad():
        for f in files:
            z = np.load(f)
            obs, act, rew = z[f"obs.{key}"], z["action"], z["reward"]
            for t in range(0, len(act), args.every):
                state = model.encode({key: obs[t]})
                a = torch.as_tensor(act[t][None, None], dtype=torch.float32)
                rewards = model.rollout(state, a).rewards
                assert rewards is not None  # reward-predicting models (TD-MPC2, PlaNet)
                pred.append(float(rewards[0, 0]))
                true.append(float(rew[t]))
    p, r = np.asarray(pred), np.asarray(true)
    print(
        f"{args.run} (checkpoint at {ck.step} steps): {len(p)} steps of {len(files)} episodes; "
        f"predicted vs true reward: correlation {np.corrcoef(p, r)[0, 1]:.3f}, mean absolute "
        f"error {np.abs(p - r).mean():.4f} (true reward mean {r.mean():.3f}, std {r.std():.3f})"
    )
    # by how far from the goal the step was (minus the reward): does it know when it is there?
    edges = (0.0, 0.05, 0.1, 0.2, np.inf)
    for lo, hi in itertools.pairwise(edges):
        sel = (-r >= lo) & (-r < hi)
        if sel.any():
            err = p[sel] - r[sel]
            print(
                f"  true cost in [{lo:g}, {hi:g}): {int(sel.sum())} steps, mean absolute error "
                f"{np.abs(err).mean():.4f}, bias (predicted - true) {err.mean():+.4f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
