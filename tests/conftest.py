"""Shared test setup. Fixture families live in their own plugin modules:
plugin_fixtures.py (local conda channel, local PyPI index and server),
plugin_docker.py (Docker Engine, local OCI registry, test base image) and
plugin_browser.py (headless Chromium for the web catalog)."""

pytest_plugins = ["plugin_fixtures", "plugin_docker", "plugin_browser"]
