"""Puts the repository root on sys.path so tests import `plugins` and `recipes` directly."""


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: multi-process and training tests (deselect with -m 'not slow')")
