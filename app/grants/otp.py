"""One-time code sign-in: the code is verified atomically and once, then the session starts.

The grant hashes the presented code (under APP_SECRET and any fallback secret of a rotation) and
leaves the rest to the sign-in store: read the identifier's code, decide with `PresentedCode`
(constant time, the same work whatever the identifier's history), count a wrong try or consume
the code, find or create the consumer, upgrade the guest whose token came with the request, and
start the session. The tokens are signed after the write. How the store does it on each database
(one locked transaction, or PostgreSQL's two round trips) is in `app.stores.signin`.
"""

from __future__ import annotations

from app.grants.base import BaseGrant
from app.grants.identified import sign_in_of
from app.otp.check import PresentedCode
from app.otp.identifiers import identifier_from
from app.services.views import session_body


class OtpGrant(BaseGrant):
    GRANT_TYPE = "otp"
    SESSION_TYPE = "otp"
    UPGRADES_GUEST = True

    def validate_token_request(self) -> None:
        self.identifier = identifier_from(self.request.data)

    def create_token_response(self) -> tuple[int, dict]:
        ctx, server, identifier, guest = self.request.ctx, self.server, self.identifier, self.guest_claims
        # Every fallback secret's hash is made whatever is stored: the same work for every request.
        presented = PresentedCode.of(server.app_secret, server.settings.app_secret_fallbacks, ctx.organization_id,
                                     ctx.mode, identifier.value, self.request.data["code"])
        row, generation = server.stores.sign_in.verify_code_and_sign_in(
            sign_in_of(self), identifier, presented, server.clock)
        access, refresh = server.tokens.sign_pair(generation)  # outside the write
        return 200, session_body(row, access, refresh, guest_id=guest["consumerId"] if guest else None)
