"""Bot defense for drops: a solved challenge in front of the routes bots abuse (guest sign-in,
OTP requests, queue enter), per mode (the API contract's "Bot defense").

A check is chosen by name from the mode's `botDefense` setting, out of the app's registry
(`usher.bot_checks`: the built-ins below are entry points like a plugin's): ALTCHA (a proof of
work signed and verified here, with the `altcha` library; no third party), Turnstile and
hCaptcha (the widget's token checked at the provider's siteverify URL). Every check answers
two questions: what does a client need to solve (`challenge`), and is this proof good
(`verify`). Refusals are 403 `challenge_required`; a provider or storage that cannot answer is
503 (never a pass).

This module never reads Flask: the view layer passes the request's header, client address
and clock in (`app.api.consumer.challenge.guard`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, cast, runtime_checkable

from altcha import (
    ChallengeOptionsV1,
    create_challenge_v1,
    extract_params_v1,
    verify_solution_v1,
)
from altcha.v1 import PayloadType

from app.errors import ApiError
from app.metrics import current_metrics
from app.ratelimit import RateLimits
from app.security.crypto import BOT_DEFENSE_SECRET_SEAL, Sealer

if TYPE_CHECKING:
    from app.registry import Registry

log = logging.getLogger("usher.botdefense")

PROVIDERS = ("off", "altcha", "turnstile", "hcaptcha")
HEADER = "X-Usher-Challenge"
CHALLENGE_LIFETIME = timedelta(minutes=5)
#: `"auto"` complexity: 50,000 at a calm rate, doubled with each doubling of the mode's
#: protected requests in the last minute above 600, at most 5,000,000.
AUTO_BASE, AUTO_CALM_RATE, AUTO_MAX = 50_000, 600, 5_000_000
FIXED_COMPLEXITY = (1_000, 10_000_000)
SITEVERIFY_TIMEOUT_SECONDS = 3.0
#: The mode's protected requests are counted in the limit storage's sliding window, against a
#: budget nobody reaches: only the count is read.
RATE_WINDOW = f"{10 ** 9} per 1 minute"


def secret_context(organization_id: str, mode: str) -> str:
    """The AEAD context of a mode's sealed captcha secret: a blob moved to another row fails."""
    return f"{organization_id}:{mode}"


def seal_secret(app_secret: str, organization_id: str, mode: str, value: str) -> bytes:
    """A captcha secret as stored: sealed with APP_SECRET (`secrets rotate` re-seals it)."""
    return Sealer(app_secret, BOT_DEFENSE_SECRET_SEAL).seal(value.encode(), secret_context(organization_id, mode))


@dataclass(frozen=True)
class Attempt:
    """One request to a protected route (or for a challenge), as the view layer saw it."""

    organization_id: str
    mode: str
    settings: Any  # the mode's settings snapshot (`OrganizationSnapshot`)
    client_address: str
    now: datetime


@dataclass(frozen=True)
class BotCheckContext:
    """What a bot check's factory may use: the typed settings (APP_SECRET, verify URLs) and the
    limit storage (ALTCHA remembers used solutions and counts the rate there)."""

    settings: Any  # app.config.Settings
    limits: RateLimits


@runtime_checkable
class BotCheck(Protocol):
    """What a bot check does (plugin API 1.0, group `usher.bot_checks`)."""

    name: str

    def challenge(self, attempt: Attempt) -> dict:
        """The body of `GET /auth/challenge` for this mode: `{"provider": name, …}` with what the
        page needs to produce a proof (a challenge to solve, a widget's site key)."""

    def verify(self, attempt: Attempt, proof: str) -> None:
        """Return if `proof` (the `X-Usher-Challenge` header) passes; raise `refused(self.name)`
        for a bad, used or expired proof, `unavailable()` (503) when it cannot be judged."""


@dataclass(frozen=True)
class BotCheckPlugin:
    """A bot check under the entry point group `usher.bot_checks`, chosen by name by a mode's
    `botDefense` setting; `build` makes the check once per app."""

    name: str
    build: Callable[[BotCheckContext], BotCheck]
    api_version: str = "1.0"  # the plugin API it was written for (app.registry.API_VERSION)


def _count(provider: str, outcome: str) -> None:
    """`usher_challenges_total{provider,outcome}`: issued, passed, refused, unavailable."""
    metrics = current_metrics()
    if metrics is not None:
        metrics.count_challenge(provider, outcome)


def refused(provider: str) -> ApiError:
    return ApiError("challenge_required", details={"provider": provider})


def unavailable() -> ApiError:
    return ApiError("service_unavailable", headers={"Retry-After": "5"})


def auto_complexity(rate_per_minute: float) -> int:
    """50,000, doubled for each doubling of the rate above 600 a minute, at most 5,000,000."""
    if rate_per_minute < 2 * AUTO_CALM_RATE:
        return AUTO_BASE
    doublings = int(math.log2(rate_per_minute / AUTO_CALM_RATE))
    return min(AUTO_BASE << doublings, AUTO_MAX)


class AltchaCheck:
    """ALTCHA's proof of work: the client finds the number behind `challenge` (a SHA-256 of the
    salt and a secret number up to `maxnumber`). The challenge is signed with a key derived from
    APP_SECRET, the organization and the mode, so another tenant's (or mode's) solution fails; its
    salt carries a 5-minute expiry, judged on the app clock; a solution works once across
    every worker and host (remembered in the limit storage until it expires)."""

    name = "altcha"

    def __init__(self, app_secret: str, limits: RateLimits, fallbacks: Sequence[str] = ()):
        self._secrets = [secret.encode() for secret in (app_secret, *fallbacks)]
        self.limits = limits

    def _key(self, organization_id: str, mode: str, secret: bytes | None = None) -> str:
        """The signing key of one mode's challenges: from APP_SECRET (or, to verify during a
        rotation, a fallback), the organization and the mode."""
        message = f"altcha:{organization_id}:{mode}".encode()
        return hmac.new(secret or self._secrets[0], message, hashlib.sha256).hexdigest()

    def complexity(self, attempt: Attempt) -> int:
        setting = attempt.settings.altcha_complexity
        if setting != "auto":
            return int(setting)
        return auto_complexity(self.limits.rate("bot_defense_rate", RATE_WINDOW, attempt.organization_id,
                                                attempt.mode))

    def challenge(self, attempt: Attempt) -> dict:
        made = create_challenge_v1(ChallengeOptionsV1(
            algorithm="SHA-256", max_number=self.complexity(attempt), expires=attempt.now + CHALLENGE_LIFETIME,
            hmac_key=self._key(attempt.organization_id, attempt.mode)))
        return {"provider": self.name, "challenge": {
            "algorithm": made.algorithm, "challenge": made.challenge, "maxnumber": made.max_number,
            "salt": made.salt, "signature": made.signature}}

    def verify(self, attempt: Attempt, proof: str) -> None:
        payload = _altcha_payload(proof)
        if payload is None:
            raise refused(self.name)
        keys = (self._key(attempt.organization_id, attempt.mode, secret) for secret in self._secrets)
        ok = any(verify_solution_v1(cast(PayloadType, payload), key, check_expires=False)[0] for key in keys)
        expires = _expiry(payload)
        if not ok or expires is None or expires <= attempt.now.timestamp():
            raise refused(self.name)
        # Once only: the first worker to remember this challenge wins; the rest refuse.
        seconds = max(1, math.ceil(expires - attempt.now.timestamp()))
        if not self.limits.first_use("altcha_solution", attempt.organization_id, attempt.mode,
                                     payload["challenge"], seconds):
            raise refused(self.name)


def _altcha_payload(proof: str) -> dict | None:
    """The base64 JSON payload, or None when it is not one (a refusal, never a 500)."""
    try:
        payload = json.loads(base64.b64decode(proof, validate=True))
    except (binascii.Error, ValueError):
        return None
    fields = ("algorithm", "challenge", "number", "salt", "signature")
    if not isinstance(payload, dict) or payload.get("algorithm") != "SHA-256" or any(
            not isinstance(payload.get(name), str) for name in fields[1:2] + fields[3:]):
        return None
    number = payload.get("number")
    if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number <= FIXED_COMPLEXITY[1]:
        return None
    return payload


def _expiry(payload: dict) -> float | None:
    values = extract_params_v1(cast(PayloadType, payload)).get("expires") or []
    try:
        return float(values[0]) if len(values) == 1 else None
    except ValueError:
        return None


class SiteverifyCheck:
    """A captcha widget's token (Turnstile, hCaptcha), checked at the provider's siteverify URL
    with the mode's secret and the client address, within 3 s. The provider keeps each token
    single-use. An unreachable or failing provider is 503, never a pass."""

    def __init__(self, name: str, verify_url: str, app_secret: str, timeout: float = SITEVERIFY_TIMEOUT_SECONDS,
                 fallbacks: Sequence[str] = ()):
        self.name, self.verify_url, self.timeout = name, verify_url, timeout
        self._sealer = Sealer(app_secret, BOT_DEFENSE_SECRET_SEAL, fallbacks)

    def challenge(self, attempt: Attempt) -> dict:
        return {"provider": self.name, "siteKey": attempt.settings.bot_defense_site_key}

    def _secret(self, attempt: Attempt) -> str:
        sealed = attempt.settings.bot_defense_secret
        if sealed is None:  # the settings refuse this; a row edited by hand must not pass
            raise unavailable()
        return self._sealer.open(sealed, secret_context(attempt.organization_id, attempt.mode)).decode()

    def verify(self, attempt: Attempt, proof: str) -> None:
        form = {"secret": self._secret(attempt), "response": proof, "remoteip": attempt.client_address}
        if self.name == "hcaptcha" and attempt.settings.bot_defense_site_key:
            form["sitekey"] = attempt.settings.bot_defense_site_key
        request = urllib.request.Request(self.verify_url, data=urllib.parse.urlencode(form).encode(), method="POST",
                                         headers={"Content-Type": "application/x-www-form-urlencoded"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # the operator's URL
                answer = json.loads(response.read(64 * 1024))
        except (OSError, ValueError) as exc:  # URLError and HTTPError are OSErrors; timeouts too
            log.warning("%s siteverify unavailable: %s", self.name, type(exc).__name__)
            raise unavailable() from None
        if not isinstance(answer, dict) or answer.get("success") is not True:
            raise refused(self.name)


class BotDefense:
    """The checks by name, and the two things a view asks: a challenge, and a guard."""

    def __init__(self, checks: Mapping[str, BotCheck], limits: RateLimits):
        self.checks = dict(checks)
        self.limits = limits

    def challenge(self, attempt: Attempt) -> dict:
        provider = attempt.settings.bot_defense
        if provider == "off":
            return {"provider": "off"}
        body = self._check(provider).challenge(attempt)
        _count(provider, "issued")
        return body

    def guard(self, route: str, attempt: Attempt, proof: str | None) -> None:
        """Before any work on a protected route: pass, or 403 `challenge_required` (503 when
        the proof cannot be judged). Every request to a protected route counts towards the
        mode's rate, which `"auto"` ALTCHA complexity follows."""
        settings = attempt.settings
        if settings.bot_defense == "off" or route not in settings.bot_defense_routes:
            return
        check = self._check(settings.bot_defense)
        if check.name == "altcha" and settings.altcha_complexity == "auto":
            self.limits.count("bot_defense_rate", RATE_WINDOW, attempt.organization_id, attempt.mode)
        try:
            if not proof or len(proof) > 8192:
                raise refused(check.name)
            check.verify(attempt, proof)
        except ApiError as error:
            _count(check.name, "refused" if error.error == "challenge_required" else "unavailable")
            raise
        _count(check.name, "passed")

    def _check(self, provider: str) -> BotCheck:
        check = self.checks.get(provider)
        if check is None:  # a setting no registered check serves: fail closed
            log.error("bot defense %r is not registered", provider)
            raise unavailable()
        return check


def build_bot_defense(registry: Registry, context: BotCheckContext) -> BotDefense:
    """Every registered bot check (built-ins and plugins), built once for the app, by name."""
    return BotDefense({name: plugin.build(context) for name, plugin in registry.bot_checks.items()}, context.limits)


def _altcha(context: BotCheckContext) -> BotCheck:
    return AltchaCheck(context.settings.app_secret, context.limits, context.settings.app_secret_fallbacks)


def _turnstile(context: BotCheckContext) -> BotCheck:
    settings = context.settings
    return SiteverifyCheck("turnstile", settings.turnstile_verify_url, settings.app_secret,
                           fallbacks=settings.app_secret_fallbacks)


def _hcaptcha(context: BotCheckContext) -> BotCheck:
    settings = context.settings
    return SiteverifyCheck("hcaptcha", settings.hcaptcha_verify_url, settings.app_secret,
                           fallbacks=settings.app_secret_fallbacks)


#: The built-in checks, declared as a plugin package declares its own (app.registry.BUILTINS).
ALTCHA = BotCheckPlugin(name="altcha", build=_altcha)
TURNSTILE = BotCheckPlugin(name="turnstile", build=_turnstile)
HCAPTCHA = BotCheckPlugin(name="hcaptcha", build=_hcaptcha)
