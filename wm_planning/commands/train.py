"""``wm-plan train``: train a world model online in an env or offline from a dataset.

    wm-plan train model=tdmpc2 env=planar-reach steps=20000
    wm-plan train model=planet data=data/reacher steps=5000 out=runs/planet-offline
    wm-plan train ... resume=true

Composes ``configs/train.yaml`` (Hydra overrides; ``model=<configs/model option>``,
``model.latent_dim=64``). Writes ``out/checkpoint.pt``, ``train.csv``, ``episodes.csv`` and
``config.yaml``; see :mod:`wm_planning.training.trainer`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from wm_planning.cli import command


def load_config(argv: list[str]) -> tuple[Any, dict[str, Any]]:
    from omegaconf import OmegaConf, open_dict

    from wm_planning.config import compose, resolve_planner_choice
    from wm_planning.training import TrainConfig

    cfg = compose("train", argv, return_hydra_config=True)
    choice = cfg.hydra.runtime.choices.get("planner")
    with open_dict(cfg):
        del cfg["hydra"]  # Hydra's own settings (unresolvable outside a Hydra run)
    raw = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(raw, dict)
    plain = {str(k): v for k, v in raw.items()}
    resolve_planner_choice(plain, choice)
    return TrainConfig.from_dict(plain), plain


@command("train", help="train a world model (tdmpc2, planet) online in an env or from a dataset")
def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    import yaml

    from wm_planning.training import train_offline, train_online

    cfg, plain = load_config(argv)
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    (Path(cfg.out) / "config.yaml").write_text(yaml.safe_dump(plain, sort_keys=False))
    start = time.perf_counter()
    trainer = train_offline(cfg, plain) if cfg.data else train_online(cfg, plain)
    print(
        f"trained {cfg.model_name} ({trainer.model.num_params():,} params) for {trainer.step} "
        f"{'updates' if cfg.data else 'env steps'} / {trainer.updates} updates in "
        f"{time.perf_counter() - start:.0f} s -> {trainer.ckpt_path}"
    )
    return 0
