"""Guest sessions: an anonymous consumer and its first token pair."""

from __future__ import annotations

from sqlalchemy import bindparam, insert

from app.db import utcnow
from app.grants.base import BaseGrant
from app.models import Consumer, new_id
from app.services.sessions import insert_session, new_session
from app.services.views import session_body

# Two Core inserts (consumer, then session) in one transaction: the hot path of a drop.
_INSERT_CONSUMER = insert(Consumer.__table__).values(
    {name: bindparam(name) for name in ("id", "organization_id", "mode", "created_at")})


class GuestGrant(BaseGrant):
    GRANT_TYPE = "guest"
    SESSION_TYPE = "guest"

    def validate_token_request(self) -> None:
        """Nothing to check beyond the publishable key (and the per-IP limit on the view)."""

    def create_token_response(self) -> tuple[int, dict]:
        ctx = self.request.ctx
        kid = self.server.tokens.keyring.current().kid
        consumer_id = new_id("guest")
        row, access, refresh = new_session(self.server.tokens, kid, self.server.app_secret, ctx.organization,
                                           ctx.mode, consumer_id, self.SESSION_TYPE)
        with self.server.db.write() as connection:
            connection.execute(_INSERT_CONSUMER, {"id": consumer_id, "organization_id": ctx.organization_id,
                                                  "mode": ctx.mode, "created_at": utcnow()})
            insert_session(connection, row)
        return 201, session_body(row, access, refresh, guest_id=consumer_id)
