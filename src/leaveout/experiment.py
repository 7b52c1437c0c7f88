"""Stable public path of the reproduction API, which lives in :mod:`leaveout.experiments`."""

from .experiments import *  # noqa: F401,F403
from .experiments import __all__  # noqa: F401
