"""Puts the repository root on sys.path so tests import `plugins` and `recipes` directly."""
