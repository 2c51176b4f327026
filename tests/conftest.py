"""The shared fixtures are a plugin module (tests/support/plugin.py); helpers are in tests/support/."""

pytest_plugins = ["tests.support.plugin"]
