"""Issue 22: one test per row of the third attack round's table, named after the row (row 10,
behind nginx, is in tests/test_nginx.py; row 11 uses the signing-key CLI as test_signing_keys.py).

Each of these failed on main before the fix (see CHANGELOG, "Unreleased (round three)")."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
from sqlalchemy import create_engine, delete, select, update

from app import create_app
from app.models import ApiKey, AuditChain, AuditEvent, WebhookEndpoint
from tests.helpers import Dashboard, publishable, secret
from tests.test_signing_keys import cli as signing_key_cli

ROOT = Path(__file__).resolve().parent.parent
HOOK = "http://127.0.0.1:9/usher"


@pytest.fixture
def make_app(app_config):
    """Apps of their own, disposed after the test."""
    made = []

    def make(**config):
        made.append(create_app({**app_config, **config}))
        return made[-1]

    yield make
    for app in made:
        app.extensions["usher"].db.dispose()


def _keys(client, sk: str) -> list[dict]:
    return client.get("/api/v1/keys", headers=secret(sk)).json["data"]


def _audit(client, sk: str, event_type: str | None = None) -> list[dict]:
    query = f"?type={event_type}&limit=100" if event_type else "?limit=100"
    response = client.get("/api/v1/audit-events" + query, headers=secret(sk))
    assert response.status_code == 200, response.json
    return response.json["data"]


def _hook(client, sk: str, url: str = HOOK, **extra):
    return client.post("/api/v1/webhook-endpoints", headers=secret(sk),
                       json={"url": url, "events": ["session.created"], **extra})


# --- 1: a restricted key revokes every key; no CLI for existing organizations -------------------

def test_key_revocation_follows_the_create_rule_and_the_last_secret_key_stays(app, client, org):
    """A `keys:write` key cannot revoke a secret key or a wider restricted key (403, nothing
    revoked); even a key holding every scope cannot revoke a mode's last secret key (400); and
    `org keys create` issues a new secret key for an existing organization, audited (actor cli)."""
    from app.security.scopes import SCOPES

    keys = org["keys"]["test"]
    sk = keys["secretKey"]
    rk = client.post("/api/v1/keys", headers=secret(sk), json={"type": "restricted", "scopes": ["keys:write"]}).json
    wider = client.post("/api/v1/keys", headers=secret(sk),
                        json={"type": "restricted", "scopes": ["keys:write", "audit:read"]}).json
    listed = {k["type"] + ("/" + ",".join(k["scopes"]) if k["type"] == "restricted" else ""): k
              for k in _keys(client, sk)}
    secret_id, publishable_id = listed["secret"]["id"], listed["publishable"]["id"]
    for target in (secret_id, wider["id"]):
        refused = client.delete(f"/api/v1/keys/{target}", headers=secret(rk["key"]))
        assert refused.status_code == 403 and refused.json["error"] == "insufficient_scope", refused.json
    assert client.delete(f"/api/v1/keys/{publishable_id}", headers=secret(rk["key"])).status_code == 204
    assert {k["id"] for k in _keys(client, sk)} >= {secret_id, wider["id"]}

    everything = client.post("/api/v1/keys", headers=secret(sk),
                             json={"type": "restricted", "scopes": sorted(SCOPES)}).json
    last = client.delete(f"/api/v1/keys/{secret_id}", headers=secret(everything["key"]))
    assert last.status_code == 400 and last.json["error"] == "validation_error", last.json
    assert "last secret key" in json.dumps(last.json)
    assert client.get("/api/v1/keys", headers=secret(sk)).status_code == 200  # still works

    result = app.test_cli_runner().invoke(args=["org", "keys", "create", "--org", org["organizationId"],
                                                "--mode", "test", "--type", "secret", "--json"])
    assert result.exit_code == 0, result.output
    made = json.loads(result.stdout)
    assert made["type"] == "secret" and made["mode"] == "test" and made["key"].startswith("sk_test_")
    assert client.get("/api/v1/keys", headers=secret(made["key"])).status_code == 200
    # Now the first secret key is no longer the last one: it can go.
    assert client.delete(f"/api/v1/keys/{secret_id}", headers=secret(everything["key"])).status_code == 204
    created = [e for e in _audit(client, made["key"], "key.created") if e["target"]["id"] == made["id"]]
    assert [(e["actor"], e["details"]["type"]) for e in created] == [({"type": "cli", "id": None}, "secret")]
    assert made["key"] not in json.dumps(created)
    unknown = app.test_cli_runner().invoke(args=["org", "keys", "create", "--org", "org_nope", "--mode", "test",
                                                 "--type", "secret", "--json"])
    assert unknown.exit_code != 0 and "no organization" in unknown.output


# --- 2: no cap on webhook endpoints ---------------------------------------------------------------

def test_webhook_endpoints_are_capped_per_organization_and_mode(app, client, org):
    """16 endpoints per organization and mode; the 17th is a `validation_error` and is not stored;
    the other mode has its own 16."""
    sk = org["keys"]["test"]["secretKey"]
    for i in range(16):
        assert _hook(client, sk, f"{HOOK}/{i}").status_code == 201
    refused = _hook(client, sk, f"{HOOK}/16")
    assert refused.status_code == 400 and refused.json["error"] == "validation_error", refused.json
    assert "16" in json.dumps(refused.json["details"])
    with app.extensions["usher"].db.sessionmaker() as session:
        stored = session.scalars(select(WebhookEndpoint.url).where(
            WebhookEndpoint.organization_id == org["organizationId"], WebhookEndpoint.mode == "test")).all()
    assert len(stored) == 16 and f"{HOOK}/16" not in stored
    assert _hook(client, org["keys"]["live"]["secretKey"], "https://1.1.1.1/usher").status_code == 201


# --- 3: test-mode endpoints at the worker host's loopback -----------------------------------------

def test_private_webhook_targets_follow_webhook_private_targets(make_app, actions, database_url):
    """`auto` allows http and loopback in test mode on a SQLite file only (refused on PostgreSQL);
    `deny` refuses them anywhere, `allow` allows them anywhere (a LAN or link-local address never)."""
    on_sqlite = database_url.startswith("sqlite")
    org = actions.create_org()
    sk = org["keys"]["test"]["secretKey"]
    expected = {"auto": on_sqlite, "deny": False, "allow": True}
    for setting, allowed in expected.items():
        client = make_app(WEBHOOK_PRIVATE_TARGETS=setting).test_client()
        for url in (f"{HOOK}/{setting}", f"http://localhost:9/{setting}", f"https://127.0.0.1/{setting}"):
            response = _hook(client, sk, url)
            assert response.status_code == (201 if allowed else 400), (setting, url, response.json)
            if not allowed:
                assert response.json["error"] == "validation_error" and "url" in response.json["details"]
        for url in ("http://169.254.169.254/latest", "http://10.1.2.3/", "https://[2002:7f00:1::]/"):
            assert _hook(client, sk, url).status_code == 400, (setting, url)
    with pytest.raises(ValueError, match="WEBHOOK_PRIVATE_TARGETS"):
        make_app(WEBHOOK_PRIVATE_TARGETS="sometimes")


# --- 4: 6to4, Teredo and site-local addresses in live mode ----------------------------------------

@pytest.mark.parametrize("address", [
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2002:a9fe:a9fe::",  # 6to4 of 169.254.169.254
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1 (obfuscated)
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "fec0::1",  # site-local
])
def test_live_urls_judge_6to4_teredo_and_site_local_addresses(client, org, address):
    response = _hook(client, org["keys"]["live"]["secretKey"], f"https://[{address}]/hook")
    assert response.status_code == 400 and response.json["error"] == "validation_error", response.json
    assert list(response.json["details"]) == ["url"]


def test_a_6to4_address_of_a_public_ipv4_is_judged_as_that_address(client, org):
    assert _hook(client, org["keys"]["live"]["secretKey"], "https://[2002:101:101::1]/hook").status_code == 201


# --- 5: /oauth/token and the mode's origins -------------------------------------------------------

def test_oauth_token_applies_the_origin_check(client, tenant):
    """A form POST from an origin the mode refuses is `invalid_client` and rotates nothing: the
    real client's refresh still works."""
    guest = tenant.guest()
    form = {"grant_type": "refresh_token", "refresh_token": guest["refreshToken"], "client_id": tenant.pk}
    refused = client.post("/oauth/token", data=form, headers={"Origin": "https://evil.example"})
    assert refused.status_code == 401 and refused.json["error"] == "invalid_client", refused.json
    assert "Access-Control-Allow-Origin" not in refused.headers
    assert tenant.refresh(guest["refreshToken"]).status_code == 200  # not `refresh_token_reused`
    allowed = client.post("/oauth/token", data={**form, "refresh_token": tenant.guest()["refreshToken"]},
                          headers={"Origin": "http://localhost:3000"})
    assert allowed.status_code == 200, allowed.json


# --- 6: PKCE downgrade ------------------------------------------------------------------------------

def test_a_code_verifier_for_a_code_without_challenge_is_refused(client, tenant):
    """RFC 9700 §2.1.1, in both dialects; the refused code stays unused."""
    def mint(subject: str) -> str:
        return client.post("/api/v1/auth/external/authorize", headers=secret(tenant.sk), json={
            "provider": "shop", "issuer": "https://shop.test", "subject": subject}).json["exchangeCode"]

    code = mint("pkce-json")
    refused = client.post("/api/v1/auth/external/exchange", headers=publishable(tenant.pk),
                          json={"exchangeCode": code, "codeVerifier": "v" * 43})
    assert refused.status_code == 401 and refused.json["error"] == "exchange_code_invalid", refused.json
    assert client.post("/api/v1/auth/external/exchange", headers=publishable(tenant.pk),
                       json={"exchangeCode": code}).status_code == 200
    form = {"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange", "subject_token": mint("pkce-form"),
            "subject_token_type": "urn:usher:params:oauth:token-type:exchange-code", "client_id": tenant.pk,
            "code_verifier": "v" * 43}
    by_form = client.post("/oauth/token", data=form)
    assert by_form.status_code == 400 and by_form.json["error"] == "invalid_grant", by_form.json


# --- 7: a forged access-log line --------------------------------------------------------------------

def test_control_characters_in_a_path_stay_on_one_log_line(client, caplog):
    caplog.set_level(logging.INFO, logger="usher.access")
    client.get("/api/v1/x%0a2026-01-01 INFO usher.access GET /api/v1/keys 200%0d%09%1b[31m")
    lines = [r.getMessage() for r in caplog.records if r.name == "usher.access"]
    assert len(lines) == 1
    line = lines[0]
    assert not re.search(r"[\x00-\x1f\x7f]", line), line
    assert "/api/v1/x\\n2026-01-01 INFO usher.access GET /api/v1/keys 200\\r\\t\\x1b[31m" in line


# --- 8: lone surrogates -----------------------------------------------------------------------------

@pytest.mark.parametrize("path, body, key", [
    ("/api/v1/experiences", '{"name": "drop \\ud800"}', "secret"),
    ("/api/v1/experiences", '{"name": "ok", "\\udc00": 1}', "secret"),
    ("/api/v1/webhook-endpoints",
     '{"url": "http://127.0.0.1:9/h", "events": ["session.created"], "description": "\\udfff x"}', "secret"),
    ("/api/v1/auth/external/authorize",
     '{"provider": "shop", "issuer": "https://shop.test", "subject": "\\ud83d"}', "secret"),
    ("/api/v1/auth/refresh", '{"refreshToken": "\\ud800\\ud800"}', "publishable"),
])
def test_lone_surrogates_are_validation_errors(client, tenant, path, body, key):
    headers = secret(tenant.sk) if key == "secret" else publishable(tenant.pk)
    response = client.post(path, data=body, headers={**headers, "Content-Type": "application/json"})
    assert response.status_code == 400 and response.json["error"] == "validation_error", response.json
    # A correctly paired surrogate is a character like any other.
    if path == "/api/v1/experiences":
        paired = client.post(path, data='{"name": "drop \\ud83d\\ude00"}',
                             headers={**headers, "Content-Type": "application/json"})
        assert paired.status_code == 201 and paired.json["name"] == "drop \U0001f600"


# --- 9: audit truncation, chain swaps and recomputation ---------------------------------------------

def test_audit_verify_catches_truncation_swaps_and_recomputation(app_config, isolated_database_url, tmp_path):
    """Edits the database directly: a test/live swap fails `audit verify` alone; a truncation
    hidden by rewinding the head, and a full recomputation, fail only with `--checkpoints`."""
    from app.services import audit

    app = create_app({**app_config, "DATABASE_URL": isolated_database_url})
    try:
        runner = app.test_cli_runner()
        org = json.loads(runner.invoke(args=["org", "create", "--name", "Audited", "--json"]).stdout)
        client = app.test_client()
        for mode in ("test", "live"):
            for _ in range(2):
                client.post("/api/v1/keys", json={"type": "publishable"},
                            headers=secret(org["keys"][mode]["secretKey"]))

        def verify(*args):
            result = runner.invoke(args=["audit", "verify", *args])
            return result.exit_code, result.output

        assert verify()[0] == 0
        checkpoint = runner.invoke(args=["audit", "checkpoint"])
        assert checkpoint.exit_code == 0, checkpoint.output
        lines = [json.loads(line) for line in checkpoint.stdout.splitlines()]
        mine = {line["mode"]: line for line in lines if line["organizationId"] == org["organizationId"]}
        assert mine["test"]["seq"] == 4 and set(mine["test"]) >= {"hash", "signature"}  # 2 by `org create` + 2
        saved = tmp_path / "checkpoints.jsonl"
        saved.write_text(checkpoint.stdout)
        code, output = verify("--checkpoints", str(saved))
        # The JSON line comes after the line naming the database.
        assert code == 0 and json.loads(output.splitlines()[-1])["checkpoints"] == len(lines), output

        engine = create_engine(isolated_database_url)
        events, chains = AuditEvent.__table__, AuditChain.__table__
        org_id = org["organizationId"]
        try:
            # Swap the organization's test and live chains (events and heads).
            def swap():
                with engine.begin() as db:
                    for table in (events, chains):
                        for old, new in (("test", "swap"), ("live", "test"), ("swap", "live")):
                            db.execute(update(table).where(table.c.organization_id == org_id, table.c.mode == old)
                                       .values(mode=new))

            swap()
            code, output = verify()
            assert code == 1 and org_id in output
            swap()
            assert verify()[0] == 0

            # Truncation: the newest test event deleted and the head rewound.
            test_events = (events.c.organization_id == org_id) & (events.c.mode == "test")
            with engine.begin() as db:
                newest = db.execute(select(events.c.seq, events.c.prev_hash).where(test_events)
                                    .order_by(events.c.seq.desc()).limit(1)).one()
                db.execute(delete(events).where(test_events, events.c.seq == newest.seq))
                db.execute(update(chains).where(chains.c.organization_id == org_id, chains.c.mode == "test")
                           .values(seq=newest.seq - 1, last_hash=newest.prev_hash))
            assert verify()[0] == 0  # undetectable from inside the database
            code, output = verify("--checkpoints", str(saved))
            assert code == 1 and "shorter" in output, output

            # Recomputation: a live event's details rewritten and the whole chain rehashed.
            with app.extensions["usher"].db.sessionmaker() as session:
                rows = list(session.scalars(select(AuditEvent).where(
                    AuditEvent.organization_id == org_id, AuditEvent.mode == "live").order_by(AuditEvent.seq)))
                rows[0].details = {**rows[0].details, "last4": "0000"}
                prev = None
                for row in rows:
                    row.prev_hash = prev
                    row.hash = prev = audit.event_hash(row.organization_id, row.mode, row.seq, row.prev_hash,
                                                       audit.event_body(row))
                session.execute(update(chains).where(chains.c.organization_id == org_id, chains.c.mode == "live")
                                .values(last_hash=prev))
                session.commit()
            assert verify()[0] == 0  # consistent again: undetectable from inside the database
            code, output = verify("--checkpoints", str(saved))
            assert code == 1 and "differs" in output and "/live" in output, output

            # A forged checkpoint file is refused as such.
            forged = dict(mine["live"], hash="0" * 64)
            saved.write_text(json.dumps(forged) + "\n")
            code, output = verify("--checkpoints", str(saved))
            assert code == 1 and "signature" in output
        finally:
            engine.dispose()
    finally:
        app.extensions["usher"].db.dispose()


# --- 11: rotate, then rotate --now -------------------------------------------------------------------

def test_rotate_now_withdraws_keys_still_waiting_to_sign(app_config, isolated_database_url):
    """The key staged by `rotate` never takes over from the emergency key of `rotate --now`:
    it is withdrawn, and `list` says so."""
    from datetime import timedelta

    from app.db import utcnow

    app = create_app({**app_config, "DATABASE_URL": isolated_database_url, "KEYRING_CACHE_SECONDS": 0})
    try:
        staged = json.loads(signing_key_cli(isolated_database_url, "rotate").stdout)["access"]["kid"]
        emergency = json.loads(signing_key_cli(isolated_database_url, "rotate", "--now").stdout)["access"]["kid"]
        listing = {key["kid"]: key for key in json.loads(signing_key_cli(isolated_database_url, "list",
                                                                         "--json").stdout)}
        assert listing[staged]["state"] == "retired" and listing[staged]["retiredAt"], listing[staged]
        assert listing[emergency]["state"] == "current"
        keyring = app.extensions["usher"].auth.tokens.keyring
        keyring.clock = lambda: utcnow() + timedelta(seconds=3600)  # well past the staged key's date
        keyring.invalidate()
        assert keyring.current().kid == emergency
    finally:
        app.extensions["usher"].db.dispose()


# --- 12: org create writes no key.created; webhook query tokens in audit details ----------------------

def test_cli_keys_are_audited_and_audit_details_drop_webhook_queries(app, client):
    result = app.test_cli_runner().invoke(args=["org", "create", "--name", "Audited", "--json"])
    org = json.loads(result.stdout)
    for mode in ("test", "live"):
        sk = org["keys"][mode]["secretKey"]
        created = _audit(client, sk, "key.created")
        assert sorted(e["details"]["type"] for e in created) == ["publishable", "secret"], mode
        assert {json.dumps(e["actor"]) for e in created} == {json.dumps({"type": "cli", "id": None})}
        assert sk not in json.dumps(created)
    sk = org["keys"]["test"]["secretKey"]
    endpoint = _hook(client, sk, HOOK + "/in?token=receiver-s3cret&x=1").json
    assert client.delete(f"/api/v1/webhook-endpoints/{endpoint['id']}", headers=secret(sk)).status_code == 204
    events = _audit(client, sk)
    hooks = [e for e in events if e["type"].startswith("webhook_endpoint.")]
    assert [e["details"]["url"] for e in hooks] == [HOOK + "/in", HOOK + "/in"]
    assert "receiver-s3cret" not in json.dumps(events)


# --- 13: destructive dashboard actions on one click ----------------------------------------------------

def test_destructive_dashboard_actions_ask_for_confirmation(app, client, org):
    """Revoke, Delete endpoint, End all sessions and Roll "now": the first POST shows a
    confirmation page (no inline script, the same strict CSP) and changes nothing; the confirmed
    POST acts; without the CSRF token it is refused."""
    keys = org["keys"]["test"]
    sk, pk = keys["secretKey"], keys["publishableKey"]
    dash = Dashboard(app.test_client())
    dash.sign_in(sk)
    extra = client.post("/api/v1/keys", headers=secret(sk), json={"type": "publishable"}).json
    endpoint = _hook(client, sk).json
    guest = client.post("/api/v1/auth/guest", headers=publishable(pk)).json
    consumer_id = guest["session"]["consumerId"]
    roll_target = next(k for k in _keys(client, sk) if k["type"] == "publishable" and k["id"] != extra["id"])

    def revoked(key_id):
        with app.extensions["usher"].db.sessionmaker() as session:
            return session.get(ApiKey, key_id).revoked_at is not None

    def rolled(key_id):
        with app.extensions["usher"].db.sessionmaker() as session:
            return session.scalar(select(ApiKey.id).where(ApiKey.rolled_from_id == key_id)) is not None

    def endpoint_gone(endpoint_id):
        with app.extensions["usher"].db.sessionmaker() as session:
            return session.get(WebhookEndpoint, endpoint_id) is None

    def sessions_ended(_):
        listed = client.get(f"/api/v1/consumers/{consumer_id}/sessions", headers=secret(sk)).json["data"]
        return all(s["revokedAt"] for s in listed)

    actions = [(f"/dashboard/keys/{extra['id']}/revoke", {}, revoked, extra["id"], "Revoke"),
               (f"/dashboard/webhooks/{endpoint['id']}/delete", {}, endpoint_gone, endpoint["id"], "Delete"),
               (f"/dashboard/consumers/{consumer_id}/end-sessions", {}, sessions_ended, None, "End all sessions"),
               (f"/dashboard/keys/{roll_target['id']}/roll", {"expiresIn": "0"}, rolled, roll_target["id"], "Roll")]
    for path, form, done, target, verb in actions:
        first = dash.post(path, form)
        assert first.status_code == 200, (path, first.status_code)
        assert not done(target), path
        page = first.text
        assert f'action="{path}"' in page and 'name="confirm" value="yes"' in page and "csrf_token" in page
        assert verb in page
        assert not re.search(r"<script(?![^>]*\bsrc=)", page) and " on" + "click=" not in page
        assert "unsafe-inline" not in first.headers["Content-Security-Policy"]
        for name, value in form.items():
            assert f'name="{name}" value="{value}"' in page
        no_csrf = dash.post(path, {**form, "confirm": "yes"}, csrf=False)
        assert no_csrf.status_code == 400 and not done(target), path
        confirmed = dash.post(path, {**form, "confirm": "yes"})
        assert confirmed.status_code == 303 and done(target), path
    # A roll with a grace period is not destructive: one step, as before.
    other = client.post("/api/v1/keys", headers=secret(sk), json={"type": "publishable"}).json
    assert dash.post(f"/dashboard/keys/{other['id']}/roll", {"expiresIn": "3600"}).status_code == 303
    assert rolled(other["id"])


# --- 14: no license -------------------------------------------------------------------------------------

def test_the_project_is_apache_2_licensed_and_says_so(client):
    license_text = (ROOT / "LICENSE").read_text()
    assert license_text.lstrip().startswith("Apache License")
    assert "Version 2.0, January 2004" in license_text and "END OF TERMS AND CONDITIONS" in license_text
    assert "9. Accepting Warranty or Additional Liability." in license_text
    info = client.get("/openapi.json").json["info"]
    assert info["license"] == {"name": "Apache-2.0", "identifier": "Apache-2.0"}
    assert "rules:" not in (ROOT / "redocly.yaml").read_text()  # no rule switched off


def test_the_upgrade_rehashes_existing_audit_chains_and_keeps_a_break_where_it_was(app_config, isolated_database):
    """Chains written under the previous rule (before the organization, mode and seq were
    hashed) verify after the upgrade; a chain broken before stays broken at the same event; the
    downgrade restores the previous hashes."""
    import hashlib

    from alembic import command

    from app.cli import alembic_config
    from app.services import audit

    url = isolated_database("0011_bot_defense")
    events, chains = AuditEvent.__table__, AuditChain.__table__

    def old_rule_chain(org: str, mode: str, count: int) -> list[dict]:
        rows, prev = [], None
        for seq in range(1, count + 1):
            row = {"id": f"evt_{org}_{mode}_{seq}", "organization_id": org, "mode": mode, "seq": seq,
                   "type": "key.created", "actor_type": "cli", "actor_id": None, "target_type": "key",
                   "target_id": f"key_{seq}", "details": {"type": "secret", "last4": f"{seq:04d}"},
                   "created_at": f"2026-01-01T00:00:0{seq}.000000Z", "prev_hash": prev}
            body = {"id": row["id"], "type": row["type"], "actor": {"type": "cli", "id": None},
                    "target": {"type": "key", "id": row["target_id"]}, "details": row["details"],
                    "createdAt": row["created_at"], "prevHash": prev}
            row["hash"] = prev = hashlib.sha256(((prev or "") + audit.canonical(body)).encode()).hexdigest()
            rows.append(row)
        return rows

    engine = create_engine(url)
    try:
        good, broken = old_rule_chain("org_good", "test", 3), old_rule_chain("org_bad", "live", 3)
        broken[1]["details"] = {"type": "secret", "last4": "9999"}  # edited after the fact
        with engine.begin() as db:
            db.execute(events.insert(), good + broken)
            db.execute(chains.insert(), [{"organization_id": rows[0]["organization_id"], "mode": rows[0]["mode"],
                                          "seq": 3, "last_hash": rows[-1]["hash"]} for rows in (good, broken)])
        command.upgrade(alembic_config(url), "head")
        with engine.connect() as db:
            results = {org: broken_at for org, _mode, _count, broken_at in audit.verify_chains(db)}
            stored = db.execute(select(events.c.id, events.c.hash)).all()
        assert results["org_good"] is None
        assert results["org_bad"] is not None and results["org_bad"].event_id == "evt_org_bad_live_2"
        assert {h for _, h in stored} != {r["hash"] for r in good + broken}  # rehashed
        command.downgrade(alembic_config(url), "0011_bot_defense")
        with engine.connect() as db:
            assert dict(db.execute(select(events.c.id, events.c.hash)).all()) == {
                r["id"]: r["hash"] for r in good + broken}
    finally:
        engine.dispose()
