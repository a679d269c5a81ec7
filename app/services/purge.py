"""Data lifecycle: delete what nobody can use any more, in small batches while traffic goes on.

Each batch is its own short transaction: select up to `batch` keys (on PostgreSQL `FOR UPDATE
SKIP LOCKED`, so several purges never wait on each other nor on a request that holds a row),
then delete them with the condition checked again. Sessions and guests are walked by primary
key (ULIDs sort by creation time) below the newest id that could qualify, so no index is added
to the hot tables for this. Running it again deletes nothing more; the audit log is not touched.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, exists, or_, select, tuple_
from ulid import ULID

from app.db import Database
from app.models import (
    AuthSession,
    CapturedMessage,
    Consumer,
    ExchangeCode,
    OtpCode,
    QueueEntry,
    WebhookDelivery,
    WebhookEvent,
)

SESSION_RETENTION = timedelta(days=30)
CODE_RETENTION = timedelta(days=1)
CAPTURED_RETENTION = timedelta(days=7)
DELIVERY_RETENTION = timedelta(days=30)


def id_bound(prefix: str, before: datetime) -> str:
    """The smallest id with this prefix made at `before`: every id below it was made earlier."""
    return f"{prefix}_{str(ULID.from_datetime(before))[:10]}{'0' * 16}"


class Purge:
    def __init__(self, db: Database, now: datetime, guest_retention_days: int = 30, batch: int = 500):
        self.db, self.now, self.batch = db, now, batch
        self.guest_retention = timedelta(days=guest_retention_days)

    def run(self) -> dict[str, int]:
        now = self.now
        s, c = AuthSession.__table__.c, Consumer.__table__.c
        session_cutoff = now - SESSION_RETENTION
        guest_cutoff = now - self.guest_retention
        live_session = exists().where(s.consumer_id == c.id, s.revoked_at.is_(None), s.expires_at > now)
        queued = exists().where(QueueEntry.__table__.c.consumer_id == c.id)
        d, e = WebhookDelivery.__table__.c, WebhookEvent.__table__.c
        return {
            "sessions": self._walk(AuthSession.__table__, s.id, id_bound("sess", session_cutoff), "sess_",
                                   or_(s.expires_at < session_cutoff, s.revoked_at < session_cutoff)),
            "guests": self._walk(Consumer.__table__, c.id, id_bound("guest", guest_cutoff), "guest_",
                                 and_(~live_session, ~queued)),
            "otpCodes": self._drain(OtpCode.__table__, (OtpCode.__table__.c.id,),
                                    OtpCode.__table__.c.expires_at < now - CODE_RETENTION),
            "exchangeCodes": self._drain(ExchangeCode.__table__, (ExchangeCode.__table__.c.code_hash,),
                                         ExchangeCode.__table__.c.expires_at < now - CODE_RETENTION),
            "capturedMessages": self._drain(CapturedMessage.__table__, (CapturedMessage.__table__.c.id,),
                                            CapturedMessage.__table__.c.id < id_bound("msg", now - CAPTURED_RETENTION)),
            "webhookDeliveries": self._drain(WebhookDelivery.__table__, (d.endpoint_id, d.event_id),
                                             d.created_at < now - DELIVERY_RETENTION),
            "webhookEvents": self._drain(WebhookEvent.__table__, (e.id,), e.created_at < now - DELIVERY_RETENTION),
        }

    def _batches(self, step: Callable[[], int | None]) -> int:
        total = 0
        while True:
            deleted = step()
            if deleted is None:
                return total
            total += deleted

    def _drain(self, table, key, condition) -> int:
        """Rows matching `condition`, deleted a batch at a time until none is left."""
        key_of = key[0] if len(key) == 1 else tuple_(*key)

        def step() -> int | None:
            with self.db.write() as connection:
                rows = connection.execute(select(*key).where(condition).limit(self.batch)
                                          .with_for_update(skip_locked=True)).all()
                if not rows:
                    return None
                values = [row[0] for row in rows] if len(key) == 1 else [tuple(row) for row in rows]
                return connection.execute(delete(table).where(key_of.in_(values), condition)).rowcount

        return self._batches(step)

    def _walk(self, table, id_column, below: str, prefix: str, condition) -> int:
        """Rows with ids in (prefix, below) matching `condition`, walked in id order (keyset)."""
        after = [prefix]  # a proper prefix of every id it covers, so strictly below all of them

        def step() -> int | None:
            with self.db.write() as connection:
                ids = connection.execute(select(id_column).where(id_column > after[0], id_column < below)
                                         .order_by(id_column).limit(self.batch)).scalars().all()
                if not ids:
                    return None
                after[0] = ids[-1]
                doomed = connection.execute(select(id_column).where(id_column.in_(ids), condition)
                                            .with_for_update(skip_locked=True)).scalars().all()
                if not doomed:
                    return 0
                return connection.execute(delete(table).where(id_column.in_(doomed), condition)).rowcount

        return self._batches(step)
