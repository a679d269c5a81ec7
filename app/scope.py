"""The app serving the current context, for the few modules below the API layer that are handed nothing.

Everything a service, store or grant needs is passed to it (database, clock, tokens, the events
outbox, limits, metrics). Two things are asked for by code that no caller can hand them to:

- `ApiError(code)` raised by a grant plugin validates `code` against the app's plugin error codes
  (`Registry.error`), wherever it is raised;
- the admin and webhook schemas' validators need the app's registry (bot checks, event types,
  plugin settings), and flask-smorest builds those schemas once, at import.

For these the API layer keeps one `AppScope` per app and tells this module how to find the one
of the current app context (`app.api.scope`), so they read a typed object instead of
`flask.current_app`, and nothing below the API layer imports Flask (the import-linter contracts
in setup.cfg). Outside an app context (a bare script, a unit test) there is no scope: plugin
codes are unknown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.registry import Registry


@dataclass(frozen=True)
class AppScope:
    """What one app lends the code below the API layer: its registry."""

    registry: Registry


def _no_app() -> AppScope | None:
    return None


# How to find the scope of the current app context: set once by the API layer (`app.api.scope`),
# which reads it from Flask's own context, so it can never disagree with `current_app` (nor
# outlive a context whose teardown failed). Until then, no app: no scope.
_resolve: list[Callable[[], AppScope | None]] = [_no_app]


def current() -> AppScope | None:
    """The scope of the innermost app context, or None outside one."""
    return _resolve[0]()


def registry() -> Registry:
    """The current app's registry; RuntimeError outside an app context (as `current_app` was)."""
    scope = current()
    if scope is None:
        raise RuntimeError("No Usher app scope: this needs an app context (see app.scope).")
    return scope.registry


def resolve_with(resolver: Callable[[], AppScope | None]) -> None:
    """Install how the current scope is found (called by the API layer only)."""
    _resolve[0] = resolver
