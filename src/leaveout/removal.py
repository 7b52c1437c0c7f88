"""Stable public path of the removal strategies, which live in :mod:`leaveout.experiments.removal`."""

from .experiments.removal import *  # noqa: F401,F403
from .experiments.removal import __all__  # noqa: F401
