"""The ``layers`` command line: the only place that prints or exits.

Each command parses its arguments, calls the library, and renders the result
with rich. Library errors (``LayerError``) become one line, a hint and the
error's exit code (``app``); nothing reaches the user as a traceback.
Building and inspecting are in ``build``, publishing and planning in
``publish``, locks, rebuilds and schedules in ``rebuild``, all on one ``app``.
"""

from . import build, check, doctor, publish, rebuild  # noqa: F401  (each adds its commands to app)
from .app import app, main

__all__ = ["app", "main"]
