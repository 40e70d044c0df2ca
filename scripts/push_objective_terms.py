"""How a DINO-WM push checkpoint's goal cost splits between the block and the arm.

For each held-out seed, four scenes are rendered and scored with the goal cost
(`wm_planning.costs_visual.goal_cost`): the start, the arm at its goal pose with the block
unmoved, the block on the target with the arm unmoved, and the goal itself. Each cost is printed
as a fraction of the start's. The goal image's token distance and the proprio term (at
`proprio_weight`) are reported apart.

    MUJOCO_GL=egl python scripts/push_objective_terms.py runs/dino_conv_push_res.pt \
        --seeds 1000-1009 --proprio-weight 3000
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from wm_planning import envs
from wm_planning.costs_visual import goal_cost
from wm_planning.models.base import Rollout
from wm_planning.models.dino_wm import pixels_to_float
from wm_planning.training.visual_checkpoint import load_visual_checkpoint

SCENES = ("start", "arm at goal", "block at goal", "goal")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--seeds", default="1000-1009", help="first-last")
    p.add_argument("--proprio-weight", type=float, default=3000.0)
    p.add_argument("--env", default="panda-push")
    args = p.parse_args()
    first, last = (int(s) for s in args.seeds.split("-"))
    model = load_visual_checkpoint(args.checkpoint).model.eval()
    size = (int(model.obs_shape[0]), int(model.obs_shape[1]))
    table: dict[str, list[np.ndarray]] = {"tokens": [], "proprio term": []}
    for seed in range(first, last + 1):
        env = envs.make(args.env, pixels=True, image_size=size)
        env.reset(seed=seed)
        g = env.goal_observation(size)
        tok = goal_cost(model, g["pixels"], g["proprio"])
        both = goal_cost(model, g["pixels"], g["proprio"], proprio_weight=args.proprio_weight)
        start, goal = env.get_state(), env.goal_state()
        n = env.nphys
        ps, pg = start[:n], goal[:n]
        blk = 1 + int(env.model.jnt_qposadr[env.model.joint("block_joint").id])  # after time
        images, proprio = [], []
        for arm, block in ((ps, ps), (pg, ps), (ps, pg), (pg, pg)):
            phys = arm.copy()
            phys[blk : blk + 7] = block[blk : blk + 7]
            state = start.copy()
            state[:n] = phys
            env.set_state(state)
            images.append(env.render(None, size))
            proprio.append(env.observe()["proprio"])
        env.close()
        with torch.no_grad():
            z = model.encode_images(pixels_to_float(torch.as_tensor(np.stack(images))))
            pe = model.embed_proprio(torch.as_tensor(np.stack(proprio)), (4,))
        r = Rollout(latents=z.flatten(1)[:, None], extras={"proprio_latents": pe[:, None]})
        t, b = tok(r).numpy(), both(r).numpy()
        table["tokens"].append(t)
        table["proprio term"].append(b - t)
        parts = ", ".join(f"{s} {v / b[0]:.2f}" for s, v in zip(SCENES, b, strict=True))
        print(f"seed {seed}: start tokens {t[0]:.3g}, proprio term {b[0] - t[0]:.3g}; "
              f"total as a fraction of the start: {parts}")  # fmt: skip
    tok_rows, pro_rows = np.array(table["tokens"]), np.array(table["proprio term"])
    total = tok_rows + pro_rows
    print(f"\nmedian over {len(total)} seeds (proprio_weight={args.proprio_weight:g}):")
    print(f"  share of the start cost that is the proprio term: "
          f"{np.median(pro_rows[:, 0] / total[:, 0]):.2f}")  # fmt: skip
    for name, rows in (("tokens only", tok_rows), ("tokens + proprio", total)):
        frac = np.median(rows / rows[:, :1], 0)
        print(
            f"  {name:16s} " + ", ".join(f"{s} {v:.2f}" for s, v in zip(SCENES, frac, strict=True))
        )


if __name__ == "__main__":
    main()
