"""MagFace as a loss of the partial-FC head (plugins.partial_fc). Torch only."""

from .magface import MagFace
from .registration import register

__all__ = ["MagFace", "register"]
