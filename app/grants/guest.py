"""Guest sessions: an anonymous consumer and its first token pair."""

from __future__ import annotations

from app.db import utcnow
from app.grants.base import BaseGrant
from app.models import Consumer, new_id
from app.services.sessions import start_session
from app.services.views import session_body


class GuestGrant(BaseGrant):
    GRANT_TYPE = "guest"
    SESSION_TYPE = "guest"

    def validate_token_request(self) -> None:
        """Nothing to check beyond the publishable key (and the per-IP limit on the view)."""

    def create_token_response(self) -> tuple[int, dict]:
        ctx = self.request.ctx
        kid = self.server.tokens.keyring.current().kid
        with self.server.db.transaction(self.request.session) as tx:
            consumer = Consumer(id=new_id("guest"), organization_id=ctx.organization_id, mode=ctx.mode,
                                created_at=utcnow())
            tx.add(consumer)
            tx.flush()  # the consumer row first: no ORM relationship orders these inserts
            row, access, refresh = start_session(tx, self.server.tokens, kid, self.server.app_secret,
                                                 ctx.organization, ctx.mode, consumer.id, self.SESSION_TYPE)
        return 201, session_body(row, access, refresh, guest_id=consumer.id)
