"""Task environments behind one API (see :mod:`.base`)."""

from .base import Env, EnvSpec, Obs, available, make, register

__all__ = ["Env", "EnvSpec", "Obs", "available", "make", "register"]
