"""NPCFace as a loss of the partial-FC head (plugins.partial_fc). Torch only."""

from .npcface import NPCFace
from .registration import register

__all__ = ["NPCFace", "register"]
