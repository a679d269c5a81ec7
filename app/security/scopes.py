"""Restricted-key scopes: what a key may do, checkable without an HTTP request.

Secret keys (`sk_`) hold every scope; publishable keys none; restricted keys (`rk_`) the list
they were created with. `x:write` includes `x:read` (who may change a resource may read it).
"""

from __future__ import annotations

from collections.abc import Iterable

from app.errors import ApiError

SCOPES: tuple[str, ...] = (
    "experiences:read", "experiences:write", "queues:read", "queues:write", "consumers:read", "sessions:write",
    "external:write", "keys:write", "settings:write", "audit:read", "webhooks:write", "introspect",
)


def key_scopes(key_type: str, stored: Iterable[str] | None) -> frozenset[str]:
    """The scopes a key of this type holds (its stored list matters for restricted keys only)."""
    if key_type == "secret":
        return frozenset(SCOPES)
    if key_type == "restricted":
        return frozenset(stored or ())
    return frozenset()


def _implied(scopes: Iterable[str]) -> frozenset[str]:
    held = set(scopes)
    held.update(scope[: -len(":write")] + ":read" for scope in list(held) if scope.endswith(":write"))
    return frozenset(held)


def holds(scopes: Iterable[str], scope: str) -> bool:
    return scope in _implied(scopes)


def has_scope(ctx, scope: str) -> bool:
    """Whether the caller (`RequestContext`, or anything with `.scopes`) may act under `scope`."""
    return holds(getattr(ctx, "scopes", ()) or (), scope)


def missing(held: Iterable[str], wanted: Iterable[str]) -> list[str]:
    """The wanted scopes that `held` does not cover (empty: no escalation)."""
    implied = _implied(held)
    return sorted(scope for scope in wanted if scope not in implied)


def insufficient_scope(*required: str) -> ApiError:
    """403 naming the scopes the caller lacks (the view decorator, services and the dashboard)."""
    return ApiError("insufficient_scope", details={"required": list(required)})
