"""Shared test setup. Fixture families live in their own plugin modules:
plugin_fixtures.py (local conda channel, local PyPI index and server),
plugin_docker.py (Docker Engine, local OCI registry, test base image),
plugin_browser.py (headless Chromium for the web catalog) and plugin_sources.py (a git
smart-HTTP server, a static wheel/find-links server, local packages)."""

pytest_plugins = ["plugin_fixtures", "plugin_docker", "plugin_browser", "plugin_sources"]
