"""Guest sessions: an anonymous consumer and its first token pair, then two signatures outside
the write (the hot path of a drop).

On PostgreSQL, when no webhook endpoint of the tenant listens to `consumer.created` or
`session.created`, both rows are one statement on an autocommit connection: one round trip
instead of BEGIN, two INSERTs and COMMIT. Otherwise (SQLite, or events to record with the
rows) one Core transaction writes the rows and their events together."""

from __future__ import annotations

from app.grants.base import BaseGrant
from app.grants.identified import SIGN_IN_EVENTS, insert_consumer
from app.models import new_id
from app.services.sessions import (
    insert_guest_and_session,
    insert_session,
    new_session_row,
)
from app.services.views import session_body, session_created


class GuestGrant(BaseGrant):
    GRANT_TYPE = "guest"
    SESSION_TYPE = "guest"

    def validate_token_request(self) -> None:
        """Nothing beyond the publishable key (the per-address budget is the view's)."""

    def create_token_response(self) -> tuple[int, dict]:
        ctx, now, db = self.request.ctx, self.server.clock(), self.server.db
        row, generation = new_session_row(self.kids, self.server.app_secret, ctx.organization, ctx.mode,
                                          new_id("guest"), self.SESSION_TYPE, now)
        written = False
        if db.one_statement_writes:
            with db.autocommit() as connection:
                if not self.server.events.listens_to_any(connection, ctx.organization_id, ctx.mode, *SIGN_IN_EVENTS):
                    insert_guest_and_session(connection, row)
                    written = True
        if not written:
            with db.write() as connection:
                insert_consumer(connection, self.server.events, "guest", ctx.organization_id, ctx.mode, now,
                                consumer_id=row.consumer_id)
                insert_session(connection, row)
                self.server.events.record(connection, session_created(row))
        access, refresh = self.server.tokens.sign_pair(generation)  # outside the write
        return 201, session_body(row, access, refresh, guest_id=row.consumer_id)
