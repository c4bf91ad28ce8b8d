"""Adds "magface" to a recipe's loss registry, with its options' defaults (config.magface)."""

from __future__ import annotations

from .magface import MagFace


def register(registry) -> None:
    registry.register(
        "magface", MagFace.from_config, source="plugins.magface (plugins/magface/magface.py)", defaults=MagFace.DEFAULTS
    )
