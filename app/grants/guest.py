"""Guest sessions: an anonymous consumer and its first token pair (two Core inserts in one
transaction, then two signatures outside it: the hot path of a drop)."""

from __future__ import annotations

from app.grants.base import BaseGrant
from app.grants.identified import insert_consumer
from app.services import events
from app.services.sessions import insert_session, new_session_row
from app.services.views import session_body, session_created


class GuestGrant(BaseGrant):
    GRANT_TYPE = "guest"
    SESSION_TYPE = "guest"

    def validate_token_request(self) -> None:
        """Nothing beyond the publishable key (the per-address budget is the view's)."""

    def create_token_response(self) -> tuple[int, dict]:
        ctx, now = self.request.ctx, self.server.clock()
        with self.server.db.write() as connection:
            consumer_id = insert_consumer(connection, "guest", ctx.organization_id, ctx.mode, now)
            row, generation = new_session_row(self.kids, self.server.app_secret, ctx.organization, ctx.mode,
                                              consumer_id, self.SESSION_TYPE, now)
            insert_session(connection, row)
            events.record(connection, ctx.organization_id, ctx.mode, "session.created", session_created(row))
        access, refresh = self.server.tokens.sign_pair(generation)  # outside the write lock
        return 201, session_body(row, access, refresh, guest_id=consumer_id)
