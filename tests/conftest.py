"""Test-session defaults: headless MuJoCo rendering and a bounded torch thread count."""

from __future__ import annotations

import os

# Must be set before mujoco is first imported anywhere in the test session.
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])

import torch  # imported after the rendering variables above

# Tests use small models: one thread avoids oversubscription beside simulator and ROS
# subprocesses on CI's 2 cores (multi-threaded tiny ops were measured ~100x slower under load).
torch.set_num_threads(1)
