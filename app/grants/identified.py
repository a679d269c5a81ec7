"""What every identified sign-in shares, for the grants and the plugin API: the sign-in a grant
asks for, and the consumer and session steps inside a grant's own write transaction (external
identities, plugins' single-use codes). The persistence is the sign-in store's
(`app.stores.signin`); signing happens after the transaction."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from app.grants.base import BaseGrant
from app.models import AuthSession
from app.services.views import session_body
from app.stores.signin import (
    SIGN_IN_EVENTS,
    SignIn,
    find_or_create_consumer,
    insert_consumer,
)

__all__ = ["SIGN_IN_EVENTS", "find_or_create_consumer", "insert_consumer", "sign_in", "sign_in_of"]


def sign_in_of(grant: BaseGrant) -> SignIn:
    """The sign-in the grant's request asks for: its tenant, its session type and keys, the guest
    it upgrades (when the server verified a guest token for it)."""
    ctx = grant.request.ctx
    return SignIn(ctx.organization, ctx.mode, grant.SESSION_TYPE or "", grant.kids, grant.server.app_secret,
                  grant.guest_claims)


def sign_in(grant: BaseGrant, connection, consumer_id: str, now: datetime) -> tuple[AuthSession, Callable[[], dict]]:
    """Inside the grant's transaction (the connection of `Database.write()`): the guest upgrade
    and the new session row. Returns a function that signs the pair and makes the body, to call
    after the transaction."""
    server = grant.server
    row, generation = server.stores.sign_in.sign_in(connection, consumer_id, sign_in_of(grant), now)

    def finish() -> dict:
        access, refresh = server.tokens.sign_pair(generation)
        return session_body(row, access, refresh, guest_id=grant.guest_id)

    return row, finish
