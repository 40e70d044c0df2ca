"""Test-session defaults: headless MuJoCo rendering and a bounded torch thread count."""

from __future__ import annotations

import os

# Must be set before mujoco is first imported anywhere in the test session.
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
