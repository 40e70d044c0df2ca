"""Task environments behind one API (see :mod:`.base`). Importing this package registers them."""

from . import arm as arm
from . import dmc as dmc  # registers DMC tasks
from .base import Env, EnvSpec, MujocoEnv, Obs, available, make, register

__all__ = ["Env", "EnvSpec", "MujocoEnv", "Obs", "available", "make", "register"]
