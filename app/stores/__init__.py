"""Persistence of each aggregate behind an interface, chosen once per app.

A grant or a view says *what* must be stored ("consume this code and start this session"); a
store says *how*, in SQLAlchemy Core. Each store has a generic implementation that runs on every
database Usher supports (one locked write transaction), and, where PostgreSQL can do the same
in fewer round trips, a PostgreSQL implementation that takes its fast path and falls back to the
generic one when it loses a race. `build_stores` picks them from the engine's dialect in
`create_app`; the grants never see which (compare Authlib's storage hooks, Ory Kratos's
persister interfaces). tests/test_stores_*_contract.py run one suite against every
implementation the test database can run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.stores.exchange import ExchangeStore, SqlExchangeStore
from app.stores.refresh import PostgresRefreshStore, RefreshStore, SqlRefreshStore

if TYPE_CHECKING:
    from app.db import Database
    from app.services.events import Events


@dataclass(frozen=True)
class Stores:
    """The stores of one app (each field: an interface, with the implementation chosen)."""
    # Each aggregate adds its field here: `sign_in: SignInStore`, `refresh: RefreshStore`, ...
    #: Refresh-token rotation (`app.stores.refresh`).
    refresh: RefreshStore
    #: Exchange codes (`app.stores.exchange`).
    exchange: ExchangeStore


def build_stores(db: Database, events: Events) -> Stores:
    """The implementations for this database: PostgreSQL's where one exists, else the generic."""
    postgresql = db.one_statement_writes
    return Stores(
        refresh=(PostgresRefreshStore if postgresql else SqlRefreshStore)(db, events),
        exchange=SqlExchangeStore(db, events),
    )
