"""Adds "npcface" to a recipe's loss registry, with its options' defaults (config.npcface)."""

from __future__ import annotations

from .npcface import NPCFace


def register(registry) -> None:
    registry.register(
        "npcface", NPCFace.from_config, source="plugins.npcface (plugins/npcface/npcface.py)", defaults=NPCFace.DEFAULTS
    )
