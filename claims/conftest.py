"""Loads the claims engine's pytest plugin for sessions that collect from claims/ (see claims/plugin.py)."""

from claims.plugin import *  # noqa: F403 -- pytest finds hooks and fixtures by their names in this module
