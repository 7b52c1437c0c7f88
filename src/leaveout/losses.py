"""Stable public path of the pointwise losses, which live in :mod:`leaveout.glm.losses`."""

from .glm.losses import *  # noqa: F401,F403
from .glm.losses import __all__  # noqa: F401
