"""UniTSFace's USS loss (memory bank, learnable bias) as a loss of the partial-FC head. Torch only."""

from .registration import register
from .uss import USS

__all__ = ["USS", "register"]
