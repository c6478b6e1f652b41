"""Wire the game into a server: settings + catalogue + router + game setup.

Kept apart from the CLI so tests, benchmarks and other entry points build the
exact server `serve` runs.
"""

from __future__ import annotations

from . import handlers, messages
from .settings import Settings
from .sgs import Server


def create_server(settings: Settings) -> Server:
    """A ready-to-start server: the game's routes, its catalogue and its timers."""
    server = Server(settings, handlers.router, catalog=messages.catalog)
    handlers.setup(server)
    return server
