"""The publishable-key cache (`PUBLISHABLE_KEY_CACHE_SECONDS`, at most 1 s): the one documented
trade of the performance work. A publishable key's row is reused by a worker for that long; a
change made elsewhere (another process: here a Core UPDATE that bypasses this app's ORM
sessions) takes effect within it; a change made through this process takes effect at once;
expiries, secret keys, unknown keys and session liveness are never served from the cache."""

from __future__ import annotations

from contextlib import contextmanager

import jwt
import pytest
from sqlalchemy import event, update

from app import create_app
from app.config import ConfigError, Settings
from app.models import ApiKey, AuthSession
from tests.helpers import Actions, TenantActions, consumer, publishable, secret


@pytest.fixture
def cached_app(app_config):
    app = create_app({**app_config, "PUBLISHABLE_KEY_CACHE_SECONDS": 1})
    yield app
    app.extensions["usher"].db.dispose()


@pytest.fixture
def tenant(cached_app):
    client = cached_app.test_client()
    created = Actions(cached_app, client).create_org()
    return TenantActions(client, created["keys"]["test"], created["organizationId"])


@contextmanager
def statements(app):
    """The SQL statements the app runs inside the block."""
    seen: list[str] = []

    def record(_conn, _cursor, statement, *_args):
        seen.append(statement)

    engine = app.extensions["usher"].db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _key_id(tenant, key_type: str) -> str:
    keys = tenant.client.get("/api/v1/keys", headers=secret(tenant.sk)).json["data"]
    return next(k["id"] for k in keys if k["type"] == key_type)


def _revoke_elsewhere(app, key_id: str) -> None:
    """What another process (a CLI, another worker) does: a commit this app's ORM never sees."""
    with app.extensions["usher"].db.write() as connection:
        connection.execute(update(ApiKey).where(ApiKey.id == key_id).values(revoked_at=app.extensions["usher"].clock()))


def _end_elsewhere(app, session_id: str) -> None:
    """A session ended by another process (a commit this app's ORM never sees)."""
    with app.extensions["usher"].db.write() as connection:
        connection.execute(update(AuthSession).where(AuthSession.id == session_id)
                           .values(revoked_at=app.extensions["usher"].clock(), revoked_reason="test"))


def test_a_cached_key_costs_no_key_query(cached_app, tenant):
    tenant.guest()  # reads and caches the key
    with statements(cached_app) as seen:
        tenant.guest()
    assert not [s for s in seen if "api_keys" in s], seen
    assert [s for s in seen if "INSERT INTO consumers" in s]


def test_a_key_revoked_elsewhere_stops_within_the_cache_time(cached_app, tenant):
    clock = cached_app.extensions["usher"].clock
    tenant.guest()
    _revoke_elsewhere(cached_app, _key_id(tenant, "publishable"))
    try:
        assert tenant.client.post("/api/v1/auth/guest", headers=publishable(tenant.pk)).status_code == 201
        clock.advance(1.01)
        refused = tenant.client.post("/api/v1/auth/guest", headers=publishable(tenant.pk))
        assert refused.status_code == 401
        assert refused.json == {"error": "Authentication required"}
    finally:
        clock.advance(-clock.offset.total_seconds())


def test_a_key_revoked_through_this_process_stops_at_once(cached_app, tenant):
    tenant.guest()
    key_id = _key_id(tenant, "publishable")
    assert tenant.client.delete(f"/api/v1/keys/{key_id}", headers=secret(tenant.sk)).status_code == 204
    assert tenant.client.post("/api/v1/auth/guest", headers=publishable(tenant.pk)).status_code == 401


def test_a_settings_change_through_this_process_applies_at_once(cached_app, tenant):
    first = tenant.guest()
    assert tenant.client.patch("/api/v1/settings", json={"accessTokenTtl": 120},
                               headers=secret(tenant.sk)).status_code == 200
    second = tenant.guest()
    claims = [jwt.decode(body["accessToken"], options={"verify_signature": False}) for body in (first, second)]
    assert claims[1]["exp"] - claims[1]["iat"] == 120
    assert claims[0]["exp"] - claims[0]["iat"] != 120


def test_a_rolled_key_stops_at_its_expiry_even_while_cached(cached_app, tenant):
    clock = cached_app.extensions["usher"].clock
    key_id = _key_id(tenant, "publishable")
    rolled = tenant.client.post(f"/api/v1/keys/{key_id}/roll", json={"expiresIn": 60}, headers=secret(tenant.sk))
    assert rolled.status_code == 201
    tenant.guest()  # the old value, cached now with its expiry
    try:
        clock.advance(60.5)  # the cached row carries the expiry, checked against the clock each time
        with statements(cached_app) as seen:
            stale = tenant.client.post("/api/v1/auth/guest", headers=publishable(tenant.pk))
        assert stale.status_code == 401
        assert tenant.client.post("/api/v1/auth/guest", headers=publishable(rolled.json["key"])).status_code == 201
        assert not [s for s in seen if s.startswith("INSERT")]
    finally:
        clock.advance(-clock.offset.total_seconds())


def test_secret_keys_are_never_cached(cached_app, tenant):
    assert tenant.client.get("/api/v1/keys", headers=secret(tenant.sk)).status_code == 200
    _revoke_elsewhere(cached_app, _key_id(tenant, "secret"))
    assert tenant.client.get("/api/v1/keys", headers=secret(tenant.sk)).status_code == 401


def test_session_liveness_is_read_on_every_request(cached_app, tenant):
    queue = tenant.queue()
    guest = tenant.guest()
    headers = consumer(tenant.pk, guest["accessToken"])
    assert tenant.client.post(f"/api/v1/queues/{queue['id']}/enter", headers=headers).status_code == 200
    assert tenant.status(queue["id"], guest["accessToken"]).status_code == 200  # key now cached
    _end_elsewhere(cached_app, guest["session"]["sessionId"])
    refused = tenant.status(queue["id"], guest["accessToken"])
    assert refused.status_code == 401


def test_an_unknown_key_is_never_remembered(cached_app, tenant):
    unknown = "pk_test_" + "A" * 32
    assert tenant.client.post("/api/v1/auth/guest", headers=publishable(unknown)).status_code == 401
    assert not cached_app.extensions["usher"].callers._publishable


def test_zero_switches_the_cache_off(app_config):
    app = create_app({**app_config, "PUBLISHABLE_KEY_CACHE_SECONDS": 0})
    try:
        client = app.test_client()
        created = Actions(app, client).create_org()
        tenant = TenantActions(client, created["keys"]["test"], created["organizationId"])
        tenant.guest()
        _revoke_elsewhere(app, _key_id(tenant, "publishable"))
        assert client.post("/api/v1/auth/guest", headers=publishable(tenant.pk)).status_code == 401
    finally:
        app.extensions["usher"].db.dispose()


@pytest.mark.parametrize("value", ["1.5", "-1", "nan", "soon"])
def test_the_cache_time_is_bounded_to_one_second(value):
    with pytest.raises(ConfigError, match="PUBLISHABLE_KEY_CACHE_SECONDS"):
        Settings.load({"DATABASE_URL": "sqlite://", "APP_SECRET": "s" * 32, "PUBLISHABLE_KEY_CACHE_SECONDS": value})


# -- queue status reads the session in its own query (requires(..., session_check="in_view")) --

def _entered_guest(app, tenant) -> tuple[dict, dict]:
    queue, guest = tenant.queue(), tenant.guest()
    headers = consumer(tenant.pk, guest["accessToken"])
    assert tenant.client.post(f"/api/v1/queues/{queue['id']}/enter", headers=headers).status_code == 200
    assert tenant.status(queue["id"], guest["accessToken"]).status_code == 200  # the key is cached now
    return queue, guest


def test_queue_status_with_a_cached_key_is_one_query_that_reads_the_session(cached_app, tenant):
    queue, guest = _entered_guest(cached_app, tenant)
    with statements(cached_app) as seen:
        assert tenant.status(queue["id"], guest["accessToken"]).status_code == 200
    assert len(seen) == 1 and "FROM queues" in seen[0] and "FROM sessions" in seen[0], seen
    # Enter (a write) keeps the check before the view: a query of its own, then the view's.
    with statements(cached_app) as seen:
        tenant.client.post(f"/api/v1/queues/{queue['id']}/enter", headers=consumer(tenant.pk, guest["accessToken"]))
    assert seen[0].startswith("SELECT EXISTS") and "FROM sessions" in seen[0], seen


@pytest.mark.parametrize("where", ["entered queue", "unknown queue", "malformed id", "another tenant's queue"])
def test_queue_status_answers_401_for_a_dead_session_before_any_404(cached_app, tenant, where):
    queue, guest = _entered_guest(cached_app, tenant)
    other = Actions(cached_app, tenant.client).create_org()
    queue_id = {"entered queue": queue["id"], "unknown queue": "q_" + "0" * 26, "malformed id": "nope",
                "another tenant's queue": TenantActions(tenant.client, other["keys"]["test"],
                                                        other["organizationId"]).queue()["id"]}[where]
    live = tenant.status(queue_id, guest["accessToken"])
    assert live.status_code == (200 if where == "entered queue" else 404)
    _end_elsewhere(cached_app, guest["session"]["sessionId"])
    refused = tenant.status(queue_id, guest["accessToken"])
    assert refused.status_code == 401 and refused.json["error"] == "Authentication required"
    foreign = tenant.client.get(f"/api/v1/queues/{queue_id}/status",  # not the origin's 403 either
                                headers={**consumer(tenant.pk, guest["accessToken"]), "Origin": "https://evil.example"})
    assert foreign.status_code == 401


@contextmanager
def reading_view(app_config, get):
    """An app with one extra GET view at /view, `get` decorated with
    `requires("access", session_check="in_view")`; yields (app, client, guest, its headers)."""
    from flask.views import MethodView

    from app.api.security import requires

    app = create_app({**app_config, "PUBLISHABLE_KEY_CACHE_SECONDS": 1})
    view = type("View", (MethodView,), {"get": requires("access", session_check="in_view")(get)})
    app.add_url_rule("/view", view_func=view.as_view("view"))
    try:
        client = app.test_client()
        created = Actions(app, client).create_org()
        tenant = TenantActions(client, created["keys"]["test"], created["organizationId"])
        guest = tenant.guest()
        yield app, client, guest, consumer(tenant.pk, guest["accessToken"])
    finally:
        app.extensions["usher"].db.dispose()


def test_a_read_only_view_that_forgets_the_session_still_answers_401(app_config):
    """The check stays the decorator's: a view that asked to read the session and does not is
    answered only after the decorator has read it."""
    from app.api.security import current_context

    def get(self):
        return {"consumerId": current_context().consumer_id}

    with reading_view(app_config, get) as (app, client, guest, headers):
        assert client.get("/view", headers=headers).status_code == 200  # the key is cached now
        with statements(app) as seen:
            assert client.get("/view", headers=headers).json == {"consumerId": guest["session"]["consumerId"]}
        assert len(seen) == 1 and "FROM sessions" in seen[0]  # read after the view, by the decorator
        _end_elsewhere(app, guest["session"]["sessionId"])
        refused = client.get("/view", headers=headers)
        assert refused.status_code == 401 and refused.json["error"] == "Authentication required"


def test_a_failing_read_only_view_answers_401_for_a_dead_session(app_config):
    """Any error of the view (here an unexpected one, a 500) gives way to a dead session's 401."""

    def get(self):
        raise RuntimeError("the view failed")

    with reading_view(app_config, get) as (app, client, guest, headers):
        assert client.get("/view", headers=headers).status_code == 500  # live: the view's own error
        _end_elsewhere(app, guest["session"]["sessionId"])
        refused = client.get("/view", headers=headers)
        assert refused.status_code == 401 and refused.json["error"] == "Authentication required"


def test_only_a_get_view_may_read_the_session_in_its_query():
    from app.api.security import requires

    def post():
        return {}

    with pytest.raises(ValueError, match="only a read-only"):
        requires("access", session_check="in_view")(post)
    with pytest.raises(ValueError, match="session_check"):
        requires("access", session_check="later")
