"""Issue and verify Usher's tokens: PyJWT, EdDSA (Ed25519) only, our own key sets only.

Access tokens are signed with the published keyring and carry `aud = "<organizationId>/<mode>"`;
refresh tokens are signed with a keyring that is never published and carry no `aud`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

import jwt

from app.tokens.keyring import Keyring

ALGORITHMS = ["EdDSA"]  # the only algorithm ever accepted; never derived from the token
ACCESS = "access"
REFRESH = "refresh"


class TokenError(Exception):
    """A token that must be refused; `expired` tells an expired but otherwise valid token apart."""

    def __init__(self, reason: str, expired: bool = False):
        super().__init__(reason)
        self.expired = expired


class Kids(NamedTuple):
    """The keys a token pair is signed with: (access, refresh)."""

    access: str
    refresh: str


def audience(organization_id: str, mode: str) -> str:
    """The `aud` of an organization's access tokens in one mode."""
    return f"{organization_id}/{mode}"


@dataclass(frozen=True)
class Generation:
    """What a token pair is made of; signing it twice gives the same bytes (Ed25519)."""

    kid: str
    organization_id: str
    mode: str
    consumer_id: str
    session_id: str
    access_jti: str
    refresh_jti: str
    iat: int
    access_exp: int
    refresh_exp: int
    refresh_kid: str


class TokenService:
    def __init__(self, keyring: Keyring, refresh_keyring: Keyring, issuer: str, leeway: int,
                 clock: Callable[[], datetime]):
        self.keyring = keyring  # access keys: published
        self.refresh_keyring = refresh_keyring  # refresh keys: never published
        self.issuer = issuer
        self.leeway = leeway
        self.clock = clock
        # Per token type, the exact header segments our keys produce -> kid, so that verifying one
        # of our tokens parses it once (in PyJWT's decode) instead of twice; a refresh header is
        # never looked up as an access one. Anything else takes the slow path.
        self._kid_by_header: dict[str, dict[str, str]] = {ACCESS: {}, REFRESH: {}}

    def _remember_header(self, token_type: str, token: str, kid: str) -> None:
        known = self._kid_by_header[token_type]
        segment = token.partition(".")[0]
        if segment not in known and len(known) < 64:
            known[segment] = kid

    def current_kids(self) -> Kids:
        """The keys that sign a pair made now."""
        return Kids(self.keyring.current().kid, self.refresh_keyring.current().kid)

    def _keyring(self, token_type: str) -> Keyring:
        return self.refresh_keyring if token_type == REFRESH else self.keyring

    def sign_pair(self, gen: Generation) -> tuple[str, str]:
        key = self.keyring.signing_key(gen.kid)
        refresh_key = self.refresh_keyring.signing_key(gen.refresh_kid)
        if key is None or refresh_key is None:
            raise TokenError("signing key is no longer valid")
        base = {"consumerId": gen.consumer_id, "organizationId": gen.organization_id,
                "sessionId": gen.session_id, "iat": gen.iat}
        access = jwt.encode({**base, "exp": gen.access_exp, "iss": self.issuer, "sub": gen.consumer_id,
                             "aud": audience(gen.organization_id, gen.mode), "jti": gen.access_jti,
                             "mode": gen.mode, "tokenType": ACCESS},
                            key.private, algorithm="EdDSA", headers={"kid": gen.kid, "typ": "JWT"})
        refresh = jwt.encode({**base, "exp": gen.refresh_exp, "iss": self.issuer, "sub": gen.consumer_id,
                              "jti": gen.refresh_jti, "mode": gen.mode, "tokenType": REFRESH},
                             refresh_key.private, algorithm="EdDSA",
                             headers={"kid": gen.refresh_kid, "typ": "JWT"})
        self._remember_header(ACCESS, access, gen.kid)
        self._remember_header(REFRESH, refresh, gen.refresh_kid)
        return access, refresh

    def verify(self, token: str, token_type: str, organization_id: str | None, mode: str | None) -> dict:
        """Claims of a valid token of this type (and organization and mode, when given).

        Each type verifies only with its own keyring: a refresh token's `kid` is unknown to the
        access keyring and the reverse."""
        keyring = self._keyring(token_type)
        kid = self._kid_by_header[token_type].get(token.partition(".")[0])
        if kid is None:
            try:
                header = jwt.get_unverified_header(token)
            except jwt.PyJWTError as exc:
                raise TokenError("malformed") from exc
            kid = header.get("kid")
            if header.get("alg") not in ALGORITHMS or not isinstance(kid, str):
                raise TokenError("algorithm or kid")
            if header == {"alg": "EdDSA", "kid": kid, "typ": "JWT"} and keyring.get(kid) is not None:
                self._remember_header(token_type, token, kid)
        key = keyring.get(kid)
        if key is None:
            raise TokenError("unknown kid")
        try:
            # Times are checked below against the app's clock (PyJWT would read the system time);
            # `aud` against the token's own organization and mode.
            claims = jwt.decode(token, key.public, algorithms=ALGORITHMS, issuer=self.issuer,
                                options={"require": ["exp", "iat", "iss", "sub", "jti",
                                                     *(["aud"] if token_type == ACCESS else [])],
                                         "verify_exp": False, "verify_iat": False, "verify_nbf": False,
                                         "verify_aud": False})
        except jwt.PyJWTError as exc:
            raise TokenError("invalid") from exc
        now = self.clock().timestamp()
        if not all(type(claims[name]) is int for name in ("exp", "iat")) or claims["iat"] > now + self.leeway:
            raise TokenError("invalid")
        if claims["exp"] <= now - self.leeway:
            raise TokenError("expired", expired=True)
        if claims.get("tokenType") != token_type:
            raise TokenError("token type")
        for name in ("consumerId", "organizationId", "sessionId", "mode"):
            if not isinstance(claims.get(name), str):
                raise TokenError(f"missing {name}")
        if claims["sub"] != claims["consumerId"]:
            raise TokenError("subject")
        if token_type == ACCESS and claims["aud"] != audience(claims["organizationId"], claims["mode"]):
            raise TokenError("audience")
        if token_type == REFRESH and "aud" in claims:
            raise TokenError("audience")
        if organization_id is not None and claims["organizationId"] != organization_id:
            raise TokenError("organization")
        if mode is not None and claims["mode"] != mode:
            raise TokenError("mode")
        return claims
