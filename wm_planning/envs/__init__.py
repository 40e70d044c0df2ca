"""Task environments behind one API (see :mod:`.base`)."""

from .base import Env, EnvSpec, MujocoEnv, Obs, available, make, register

__all__ = ["Env", "EnvSpec", "MujocoEnv", "Obs", "available", "make", "register"]
