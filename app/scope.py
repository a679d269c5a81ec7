"""The app serving the current context, for the few modules below the API layer that are handed nothing.

Everything a service, store or grant needs is passed to it (database, clock, tokens, the events
outbox, limits). Three things are asked for by code that no caller can hand them to:

- `ApiError(code)` raised by a grant plugin validates `code` against the app's plugin error codes
  (`Registry.error`), wherever it is raised;
- the admin and webhook schemas' validators need the app's registry (bot checks, event types,
  plugin settings), and flask-smorest builds those schemas once, at import;
- `app.metrics.security_event`, called by the grants, counts in the app's metrics.

For these the API layer binds one `AppScope` to each Flask app context it pushes
(`app.api.scope`), so they read a typed object instead of `flask.current_app`, and nothing below
the API layer imports Flask (the import-linter contracts in setup.cfg). Outside an app context
(a bare script, a unit test) there is no scope: plugin codes are unknown, metrics are not counted.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.metrics import Metrics
    from app.registry import Registry


@dataclass(frozen=True)
class AppScope:
    """What one app lends the code below the API layer: its registry and its metrics."""

    registry: Registry
    metrics: Metrics


# One entry per app context pushed in this context (thread or task), innermost last; None for an
# app that is not Usher's. A tuple, replaced on each change, so a copied context never shares it.
_STACK: ContextVar[tuple[AppScope | None, ...]] = ContextVar("usher_app_scope", default=())


def current() -> AppScope | None:
    """The scope of the innermost app context, or None outside one."""
    stack = _STACK.get()
    return stack[-1] if stack else None


def registry() -> Registry:
    """The current app's registry; RuntimeError outside an app context (as `current_app` was)."""
    scope = current()
    if scope is None:
        raise RuntimeError("No Usher app scope: this needs an app context (see app.scope).")
    return scope.registry


def enter(scope: AppScope | None) -> None:
    """An app context was pushed (called by the API layer only)."""
    _STACK.set((*_STACK.get(), scope))


def leave() -> None:
    """The innermost app context was popped (called by the API layer only)."""
    stack = _STACK.get()
    if stack:  # a context pushed before any app bound its scope has no entry
        _STACK.set(stack[:-1])
