"""Guest sessions: an anonymous consumer and its first token pair, then two signatures outside
the write (the hot path of a drop). The store writes both rows at once (on PostgreSQL, one
statement when nobody listens to their events: `app.stores.signin`)."""

from __future__ import annotations

from app.grants.base import BaseGrant
from app.grants.identified import sign_in_of
from app.services.views import session_body


class GuestGrant(BaseGrant):
    GRANT_TYPE = "guest"
    SESSION_TYPE = "guest"

    def validate_token_request(self) -> None:
        """Nothing beyond the publishable key (the per-address budget is the view's)."""

    def create_token_response(self) -> tuple[int, dict]:
        server = self.server
        row, generation = server.stores.sign_in.start_guest(sign_in_of(self), server.clock())
        access, refresh = server.tokens.sign_pair(generation)  # outside the write
        return 201, session_body(row, access, refresh, guest_id=row.consumer_id)
