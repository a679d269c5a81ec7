"""APP_SECRET across hosts and rotations (no Flask here).

- `check_fingerprint`, at every start: the database keeps a keyed hash of the secret its
  hashes and seals belong to; a host whose APP_SECRET (or one of its APP_SECRET_FALLBACKS) does
  not match it refuses to start, instead of answering 401 and 500 while saying it is ready.
- `rotate` re-seals every sealed value with APP_SECRET and records its fingerprint; hashes of
  values that are stored nowhere (secret and restricted keys, refresh tokens, codes) cannot be
  recomputed: they move to APP_SECRET on their next successful use.
- `status` counts, per fallback, the rows that still need it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from sqlalchemy import Connection, Table, func, inspect, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from app.config import ConfigError, Settings
from app.db import Database, utcnow
from app.models import (
    ApiKey,
    AppSecretFingerprint,
    AuthSession,
    CapturedMessage,
    DashboardSession,
    OrganizationSettings,
    SigningKey,
    WebhookEndpoint,
)
from app.security.crypto import (
    BOT_DEFENSE_SECRET_SEAL,
    CAPTURE_SEAL,
    DASHBOARD_REVEAL_SEAL,
    SIGNING_KEY_SEAL,
    WEBHOOK_SECRET_SEAL,
    Sealer,
    secret_fingerprint,
    short_fingerprint,
)

_FINGERPRINTS = AppSecretFingerprint.__table__
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SealedColumn:
    """A sealed column: its table, the column, the columns its seal is bound to (their values
    joined by ":"), the columns that find its row, the purpose."""

    table: Table
    column: str
    context: tuple[str, ...]
    key: tuple[str, ...]
    purpose: str


SEALED = (
    SealedColumn(SigningKey.__table__, "private_key_encrypted", ("kid",), ("kid",), SIGNING_KEY_SEAL),
    SealedColumn(WebhookEndpoint.__table__, "secret_sealed", ("id",), ("id",), WEBHOOK_SECRET_SEAL),
    SealedColumn(WebhookEndpoint.__table__, "previous_secret_sealed", ("id",), ("id",), WEBHOOK_SECRET_SEAL),
    SealedColumn(CapturedMessage.__table__, "body_sealed", ("id",), ("id",), CAPTURE_SEAL),
    SealedColumn(DashboardSession.__table__, "reveal", ("token_hash",), ("token_hash",), DASHBOARD_REVEAL_SEAL),
    SealedColumn(OrganizationSettings.__table__, "bot_defense_secret", ("organization_id", "mode"),
                 ("organization_id", "mode"), BOT_DEFENSE_SECRET_SEAL),
)
_KEYS, _SESSIONS = ApiKey.__table__, AuthSession.__table__


def stored_fingerprint(connection: Connection) -> str | None:
    return connection.execute(select(_FINGERPRINTS.c.fingerprint).where(_FINGERPRINTS.c.id == 1)).scalar()


def check_fingerprint(db: Database, settings: Settings) -> None:
    """Record APP_SECRET's fingerprint when the database has none yet (its first start after
    the upgrade that made the table), else refuse a secret that matches neither it nor a
    fallback (ConfigError naming the variables). Before that upgrade there is nothing to check;
    with the database down the process starts anyway (as before: `/readyz` says 503 until it
    answers, and a wrong secret then shows there as unopenable signing keys)."""
    try:
        with db.engine.connect() as connection:
            if not inspect(connection).has_table(_FINGERPRINTS.name):
                return
            stored = stored_fingerprint(connection)
    except OperationalError:
        log.warning("APP_SECRET not checked against the database's fingerprint: the database does not answer")
        return
    if stored is None:
        stored = _record_first(db, settings.app_secret)
    if stored in {secret_fingerprint(secret) for secret in settings.app_secrets}:
        return
    raise ConfigError(
        f"APP_SECRET does not match the secret this database belongs to (its fingerprint {stored[:16]}; "
        f"this host's APP_SECRET has {short_fingerprint(settings.app_secret)}"
        + (f", its APP_SECRET_FALLBACKS {', '.join(short_fingerprint(f) for f in settings.app_secret_fallbacks)}"
           if settings.app_secret_fallbacks else ", and APP_SECRET_FALLBACKS is empty")
        + "): every host sharing a database must have the same APP_SECRET (during a rotation, the earlier one "
        "in APP_SECRET_FALLBACKS)")


def _record_first(db: Database, app_secret: str) -> str:
    """The first fingerprint; rows hashed before it existed were hashed with this same secret
    (there was no other way), so they are marked with it. Two hosts starting at once: one wins,
    the other reads the winner's."""
    fingerprint, short = secret_fingerprint(app_secret), short_fingerprint(app_secret)
    try:
        with db.write() as connection:
            connection.execute(_FINGERPRINTS.insert().values(id=1, fingerprint=fingerprint, recorded_at=utcnow()))
            _mark_unmarked(connection, short)
    except IntegrityError:
        pass
    with db.engine.connect() as connection:
        found = stored_fingerprint(connection)
    assert found is not None
    return found


def _mark_unmarked(connection: Connection, short: str) -> None:
    connection.execute(update(_KEYS).where(_KEYS.c.lookup_fingerprint.is_(None), _KEYS.c.type != "publishable")
                       .values(lookup_fingerprint=short))
    connection.execute(update(_SESSIONS).where(_SESSIONS.c.refresh_fingerprint.is_(None))
                       .values(refresh_fingerprint=short))


def _sealed_rows(connection: Connection, sealed: SealedColumn) -> Iterator[tuple[tuple, str, bytes]]:
    """(the row's key values, the seal's context, the sealed value) of every row that has one."""
    table = sealed.table
    column = table.c[sealed.column]
    rows = connection.execute(select(*(table.c[name] for name in sealed.key),
                                     *(table.c[name] for name in sealed.context), column).where(column.is_not(None)))
    width = len(sealed.key)
    for row in rows:
        yield tuple(row[:width]), ":".join(str(value) for value in row[width:-1]), row[-1]


def rotate(db: Database, settings: Settings) -> dict:
    """Re-seal with APP_SECRET every value a fallback sealed, and make APP_SECRET the recorded
    secret: one transaction, so a failure leaves everything as it was. Returns counts."""
    resealed = 0
    with db.write() as connection:
        previous = stored_fingerprint(connection)
        if previous is not None:  # rows written by hosts that predate the fingerprint columns
            short = previous[:16]
            _mark_unmarked(connection, short)
        for sealed in SEALED:
            sealer = Sealer(settings.app_secret, sealed.purpose, settings.app_secret_fallbacks)
            table = sealed.table
            for key, context, blob in _sealed_rows(connection, sealed):
                try:
                    plaintext, index = sealer.open_with(blob, context)
                except InvalidTag:
                    raise RotationError(f"{table.name}.{sealed.column} of {':'.join(key)} opens with neither "
                                        "APP_SECRET nor any of APP_SECRET_FALLBACKS: nothing was changed") from None
                if index:
                    connection.execute(update(table).where(*(table.c[name] == value for name, value
                                                             in zip(sealed.key, key, strict=True)))
                                       .values({sealed.column: sealer.seal(plaintext, context)}))
                    resealed += 1
        values = {"fingerprint": secret_fingerprint(settings.app_secret), "recorded_at": utcnow()}
        if previous is None:
            connection.execute(_FINGERPRINTS.insert().values(id=1, **values))
        else:
            connection.execute(_FINGERPRINTS.update().where(_FINGERPRINTS.c.id == 1).values(values))
    return {"resealed": resealed, "fingerprint": short_fingerprint(settings.app_secret)}


class RotationError(Exception):
    """A sealed value no configured secret opens."""


def status(db: Database, settings: Settings) -> dict:
    """For each fallback, how many rows still depend on it: sealed values only it opens, and
    key lookups and refresh hashes it made (they move on their next use). OTP and exchange codes
    (minutes) and dashboard sessions (8 h idle) are not counted: they end by themselves."""
    fallbacks = settings.app_secret_fallbacks
    rows = [0] * len(fallbacks)
    with db.engine.connect() as connection:
        for sealed in SEALED:
            sealer = Sealer(settings.app_secret, sealed.purpose, fallbacks)
            for _, context, blob in _sealed_rows(connection, sealed):
                try:
                    index = sealer.open_with(blob, context)[1]
                except InvalidTag:
                    continue
                if index:
                    rows[index - 1] += 1
        now = utcnow()
        live = ((_KEYS.c.lookup_fingerprint, _KEYS.c.revoked_at.is_(None)
                 & (_KEYS.c.expires_at.is_(None) | (_KEYS.c.expires_at > now))),
                (_SESSIONS.c.refresh_fingerprint, _SESSIONS.c.revoked_at.is_(None) & (_SESSIONS.c.expires_at > now)))
        for column, alive in live:
            counted = connection.execute(select(column, func.count()).where(alive).group_by(column)).all()
            counts: dict[str | None, int] = {fingerprint: count for fingerprint, count in counted}
            for index, fallback in enumerate(fallbacks):
                rows[index] += counts.get(short_fingerprint(fallback), 0)
    return {"fallbacks": [{"fingerprint": short_fingerprint(fallback), "rows": count}
                          for fallback, count in zip(fallbacks, rows, strict=True)]}
