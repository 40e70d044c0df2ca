"""Training of the learned world models: replay buffer (:mod:`.buffer`), checkpoints
(:mod:`.checkpoint`), acting with the shared planners (:mod:`.agent`) and the offline/online
loops (:mod:`.trainer`)."""

from .agent import Agent, EpisodeStats, make_planner, run_episode
from .buffer import ReplayBuffer
from .checkpoint import (
    CHECKPOINT_VERSION,
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
    strip_checkpoint,
)
from .trainer import TrainConfig, Trainer, make_env, train_offline, train_online

__all__ = [
    "CHECKPOINT_VERSION",
    "Agent",
    "Checkpoint",
    "CheckpointError",
    "EpisodeStats",
    "ReplayBuffer",
    "TrainConfig",
    "Trainer",
    "load_checkpoint",
    "make_env",
    "make_planner",
    "run_episode",
    "save_checkpoint",
    "strip_checkpoint",
    "train_offline",
    "train_online",
]
