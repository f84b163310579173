"""Registers the claims engine's pytest plugin (claims/plugin.py) for sessions that collect from claims/, unless the
installed package's entry point registered it already (then registering it again would add its options twice)."""

import claims.plugin as _plugin


def pytest_addhooks(pluginmanager):  # called once this conftest is registered, before the options are parsed
    if not pluginmanager.is_registered(_plugin):
        pluginmanager.register(_plugin, "claims.plugin")
