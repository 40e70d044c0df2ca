"""ROS 2 interfaces of wm-planning: the planner node, the MuJoCo arm node, and their ROS-free
helpers (:mod:`.conversions`, :mod:`.safety`, :mod:`.models`). See ``docs/ros.md``."""

import os

# Headless rendering: must be chosen before mujoco is first imported in a node process.
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
