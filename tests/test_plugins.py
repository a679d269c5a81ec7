"""Plugins: one registry for Usher's own grants, senders and bot checks and for installed
packages; the example plugin (examples/plugins/usher-magic-link) installed from its folder with
pip; a tiny sender plugin (tests/plugins/usher-test-sms) that replaces the SMS webhook sender.

How the packages are installed, fast and honest: `pip install --no-build-isolation --no-deps
--no-index --target DIR <folder>` builds a real wheel from the folder's own pyproject.toml
(hatchling, pinned in requirements-dev, so no network) and installs it with its dist-info into
DIR, so its entry points are real installed metadata found by `importlib.metadata`, as in a
user's virtual environment. Every check of an installed plugin runs in a subprocess of the
project's interpreter with DIR on PYTHONPATH (`flask --app wsgi …`, or a short script), as a
deployment would run it. A new `python -m venv` plus `pip install -r requirements.txt` would cost
minutes per run and test pip rather than Usher; `--no-deps` hides nothing because neither package
declares a dependency. The test process itself never has DIR on its path: the rest of the suite
sees a plain Usher, and these tests prove Usher needs no change to serve the plugins.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from marshmallow import fields, validate
from sqlalchemy import create_engine, inspect, text

from app import create_app, plugins
from app.config import ConfigError
from app.errors import ApiError
from app.plugins import BotCheck, BotCheckPlugin
from app.registry import (
    BUILTIN,
    BUILTINS,
    GROUPS,
    GrantPlugin,
    Registry,
)
from tests.conftest import APP_SECRET
from tests.helpers import Dashboard, as_form, publishable, secret

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "plugins" / "usher-magic-link"
TEST_SMS = ROOT / "tests" / "plugins" / "usher-test-sms"
ALL_BUILTIN_GRANTS = "guest,refresh_token,otp,external"
# What the environment of a developer's shell must not add to a subprocess's settings.
_SETTINGS_VARS = ("DATABASE_URL", "ENABLED_GRANTS", "OTP_EMAIL_SENDER", "OTP_SMS_SENDER", "SMS_WEBHOOK_URL",
                  "RATELIMIT_STORAGE_URI", "PYTHONPATH")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """Both packages, installed by pip from their folders into a directory of their own."""
    target = tmp_path_factory.mktemp("site-packages")
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-build-isolation", "--no-deps",
                             "--no-index", "--target", str(target), str(EXAMPLE), str(TEST_SMS)],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    entry_points = {path.parent.name: path.read_text() for path in target.glob("*.dist-info/entry_points.txt")}
    assert entry_points == {
        "usher_magic_link-1.0.0.dist-info": "[usher.grants]\nmagic_link = usher_magic_link:plugin\n",
        "usher_test_sms-0.1.0.dist-info": "[usher.senders]\ntest_sms = usher_test_sms:plugin\n"}
    assert not list(EXAMPLE.glob("build")) and not list(EXAMPLE.glob("*.egg-info"))  # the folder stays clean
    return target


def run(site: Path, *args: str, timeout: float = 180, **env: str) -> subprocess.CompletedProcess:
    """The project's interpreter with the installed plugins on its path, from Usher's folder."""
    environ = {key: value for key, value in os.environ.items() if key not in _SETTINGS_VARS}
    environ.update({"PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]), "APP_SECRET": APP_SECRET, **env})
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=environ, capture_output=True, text=True,
                          timeout=timeout, check=False)


def flask(site: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return run(site, "-m", "flask", "--app", "wsgi", *args, **env)


_DOCUMENT = textwrap.dedent("""
    import json
    from app import create_app
    app = create_app()
    client = app.test_client()
    document = client.get("/openapi.json").json
    registry = app.extensions["usher_registry"]
    post = client.post("/api/v1/auth/magic-link/verify", json={"token": "ml_x"},
                       headers={"X-Publishable-Key": "pk_test_" + "a" * 32})
    print(json.dumps({
        "paths": {path: {method: operation["operationId"] for method, operation in operations.items()
                         if method != "parameters"} for path, operations in document["paths"].items()},
        "sessionTypes": document["components"]["schemas"]["SessionInfo"]["properties"]["type"]["enum"],
        "errorCodes": document["components"]["schemas"]["Error"]["properties"]["error"]["enum"],
        "origins": {f"{group} {name}": origin for (group, name), origin in registry.origins.items()},
        "verifyStatus": post.status_code, "verifyError": post.json["error"]}))
""")


def test_an_installed_plugin_opens_no_route_until_enabled(site, database_url):
    database = database_url
    off = run(site, "-c", _DOCUMENT, DATABASE_URL=database)
    assert off.returncode == 0, off.stderr
    off_doc = json.loads(off.stdout)
    assert off_doc["origins"]["usher.grants magic_link"] == "usher-magic-link 1.0.0"  # installed, found …
    assert off_doc["origins"]["usher.grants otp"] == BUILTIN
    assert not [path for path in off_doc["paths"] if "magic-link" in path]  # … and not served
    assert (off_doc["verifyStatus"], off_doc["verifyError"]) == (404, "not_found")
    assert off_doc["sessionTypes"] == ["guest", "otp", "external"]
    assert "magic_link_invalid" not in off_doc["errorCodes"]

    on = run(site, "-c", _DOCUMENT, DATABASE_URL=database, ENABLED_GRANTS=f"{ALL_BUILTIN_GRANTS},magic_link")
    assert on.returncode == 0, on.stderr
    on_doc = json.loads(on.stdout)
    assert on_doc["paths"]["/api/v1/auth/magic-link/request"] == {"post": "requestMagicLink"}
    assert on_doc["paths"]["/api/v1/auth/magic-link/verify"] == {"post": "verifyMagicLink"}
    assert on_doc["sessionTypes"] == ["guest", "otp", "external", "magic_link"]
    assert {"magic_link_invalid", "magic_link_expired"} <= set(on_doc["errorCodes"])
    assert on_doc["verifyStatus"] == 401  # routed now (an unknown publishable key)
    assert set(off_doc["paths"]) == set(on_doc["paths"]) - {"/api/v1/auth/magic-link/request",
                                                            "/api/v1/auth/magic-link/verify"}


def test_db_upgrade_applies_the_plugin_branch_and_purge_removes_its_dead_rows(site, isolated_database_url):
    url = isolated_database_url  # at Usher's head, upgraded by this process (which has no plugin)
    engine = create_engine(url)
    try:
        assert "magic_link_tokens" not in inspect(engine).get_table_names()
        for _ in range(2):  # the second run finds nothing to do
            upgraded = flask(site, "db", "upgrade", DATABASE_URL=url)
            assert upgraded.returncode == 0, upgraded.stderr
        with engine.connect() as connection:
            versions = set(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())
        assert "magic_link_0001" in versions and len(versions) == 2  # Usher's head and the plugin's branch
        assert "magic_link_tokens" in inspect(engine).get_table_names()

        made = flask(site, "org", "create", "--name", "Purge", "--json", DATABASE_URL=url)
        org_id = json.loads(made.stdout)["organizationId"]
        now = datetime.now(UTC).replace(tzinfo=None)
        rows = {"dead": now - timedelta(days=2), "recently_expired": now - timedelta(hours=1),
                "live": now + timedelta(minutes=10)}
        with engine.begin() as connection:
            for name, expires in rows.items():
                connection.execute(text("INSERT INTO magic_link_tokens (code_hash, organization_id, mode, email, "
                                        "created_at, expires_at) VALUES (:h, :o, 'test', 'a@example.com', :c, :e)"),
                                   {"h": name, "o": org_id, "c": expires - timedelta(minutes=15), "e": expires})
        purged = flask(site, "purge", DATABASE_URL=url)
        assert purged.returncode == 0, purged.stderr
        assert json.loads(purged.stdout)["magic_link.tokens"] == 1
        with engine.connect() as connection:
            left = set(connection.execute(text("SELECT code_hash FROM magic_link_tokens")).scalars())
        assert left == {"recently_expired", "live"}
    finally:
        engine.dispose()


def test_the_example_plugins_own_tests_pass_on_this_database(site, isolated_database, database_url):
    """Its flow end to end (request, outbox, verify, guest upgrade, single use, expiry) on SQLite
    and, in the PostgreSQL pass, on a PostgreSQL schema of its own."""
    env = {"USHER_MAGIC_LINK_DATABASE_URL": isolated_database()} if database_url.startswith("postgresql") else {}
    result = run(site, "-m", "pytest", str(EXAMPLE / "tests"), "-q", "-p", "no:cacheprovider", timeout=300, **env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "8 passed" in result.stdout and "skipped" not in result.stdout, result.stdout


@pytest.mark.parametrize(("env", "message"), [
    ({"ENABLED_GRANTS": "guest,passkey"},
     ("ENABLED_GRANTS names unknown grant types ['passkey']; installed: external, guest, magic_link, otp, "
      "refresh_token")),
    ({"OTP_SMS_SENDER": "twilio"},
     "OTP_SMS_SENDER names 'twilio', which is not an installed sms sender; installed: console, test_sms, webhook"),
    ({"OTP_EMAIL_SENDER": "test_sms"},
     "OTP_EMAIL_SENDER names 'test_sms', which is not an installed email sender; installed: console, smtp"),
])
def test_an_unknown_name_stops_the_app_listing_the_installed_names(site, tmp_path, env, message):
    result = flask(site, "db", "upgrade", DATABASE_URL=f"sqlite:///{tmp_path / 'never.sqlite3'}", **env)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].endswith(message), result.stderr
    never = tmp_path / "never.sqlite3"
    assert not never.exists() or not inspect(create_engine(f"sqlite:///{never}")).get_table_names()  # nothing done


_SMS_BY_PLUGIN = textwrap.dedent("""
    import json, os
    from app import create_app
    app = create_app()
    keys = json.loads(app.test_cli_runner().invoke(args=["org", "create", "--name", "Sms", "--json"]).stdout)
    pk = {"X-Publishable-Key": keys["keys"]["live"]["publishableKey"]}
    sent = app.test_client().post("/api/v1/auth/otp/request", json={"phone": "+12025551234"}, headers=pk)
    line = json.loads(open(os.environ["TEST_SMS_FILE"]).read().splitlines()[-1])
    code = line["body"].split("code is ")[1][:6]
    verified = app.test_client().post("/api/v1/auth/otp/verify", headers=pk,
                                      json={"phone": "+12025551234", "code": code})
    sms = type(app.extensions["usher"].senders.sms).__name__
    print(json.dumps({"sent": sent.status_code, "to": line["to"], "verified": verified.status_code,
                      "type": verified.json["session"]["type"], "sms": sms}))
""")


def test_a_sender_plugin_replaces_the_sms_webhook_sender_by_name(site, tmp_path, database_url):
    sms_file = tmp_path / "sms.jsonl"
    result = run(site, "-c", _SMS_BY_PLUGIN, DATABASE_URL=database_url, OTP_SMS_SENDER="test_sms",
                 TEST_SMS_FILE=str(sms_file))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"sent": 202, "to": "+12025551234", "verified": 200, "type": "otp",
                                         "sms": "FileSms"}
    assert len(sms_file.read_text().splitlines()) == 1  # a live-mode code, sent once, by the plugin


# In-process: the registry itself (no package installed).
def test_the_builtins_are_entry_points_through_the_same_registry(app):
    registry = app.extensions["usher_registry"]
    assert {group for group in BUILTINS} == set(GROUPS)
    assert all(isinstance(entry_point, EntryPoint) and entry_point.group == group
               for group, declared in BUILTINS.items() for entry_point in declared)
    assert set(registry.grants) == {"guest", "refresh_token", "otp", "external"}
    assert set(registry.senders) == {"console", "smtp", "webhook", "capture"}
    assert set(registry.bot_checks) == {"altcha", "turnstile", "hcaptcha"}
    assert set(app.extensions["usher"].bot_defense.checks) == {"altcha", "turnstile", "hcaptcha"}
    assert set(registry.origins.values()) == {BUILTIN}
    with pytest.raises(ConfigError, match=r"'otp' is installed twice: by usher \(built-in\) and evil 1\.0"):
        registry.register("usher.grants", "otp", registry.grants["otp"], "evil 1.0")


class _Word:
    """A bot check of a plugin's: the proof is a word."""

    name = "word"

    def challenge(self, attempt: plugins.Attempt) -> dict:
        return {"provider": self.name, "hint": "say the word"}

    def verify(self, attempt: plugins.Attempt, proof: str) -> None:
        if proof != "solved":
            raise plugins.refused(self.name)


def test_a_bot_check_registers_through_the_same_door():
    registry = Registry()
    registry.register("usher.bot_checks", "word", BotCheckPlugin(name="word", build=lambda ctx: _Word()),
                      "usher-word 1.0")
    check = registry.bot_check("word").build(None)  # type: ignore[arg-type]
    assert isinstance(check, BotCheck)
    attempt = plugins.Attempt("org_1", "test", None, "192.0.2.1", datetime.now(UTC))
    check.verify(attempt, "solved")
    with pytest.raises(ApiError) as refusal:
        check.verify(attempt, "guessed")
    assert refusal.value.error == "challenge_required" and refusal.value.details == {"provider": "word"}
    with pytest.raises(ConfigError, match="bot check 'hcaptcha' is not installed; installed: word"):
        registry.bot_check("hcaptcha")
    with pytest.raises(ConfigError, match=r"needs plugin API 2\.0; this Usher offers 1"):
        registry.register("usher.bot_checks", "turnstile",
                          BotCheckPlugin(name="turnstile", build=lambda ctx: _Word(), api_version="2.0"))
    with pytest.raises(ConfigError, match="is not a SenderPlugin"):
        registry.register("usher.senders", "word", BotCheckPlugin(name="word", build=lambda ctx: _Word()))


class LoyaltyGrant(plugins.Grant):
    GRANT_TYPE = "loyalty"
    SESSION_TYPE = "loyalty"


class LoyaltyView(plugins.GrantView):
    grant = LoyaltyGrant
    rule = "/auth/loyalty"

    @plugins.requires("publishable")
    @plugins.doc.response(204)
    def post(self):
        """Link a loyalty card"""


LOYALTY = GrantPlugin(grant=LoyaltyGrant, views=(LoyaltyView,), event_types=("loyalty.linked",), settings={
    "loyaltyPointsPerVisit": fields.Integer(load_default=10, validate=validate.Range(1, 1000),
                                            metadata={"description": "Points a visit earns (1–1000)"})})


@pytest.fixture
def loyalty_installed(monkeypatch):
    """A grant plugin as an installed entry point (without pip: the registry's discovery replaced)."""
    from app import registry

    found = {"usher.grants": [EntryPoint(name="loyalty", value="tests.test_plugins:LOYALTY", group="usher.grants")]}
    monkeypatch.setattr(registry, "installed_entry_points", lambda group: found.get(group, []))


def test_event_and_session_types_follow_the_enabled_grants(app_config, org, loyalty_installed):
    sk = org["keys"]["test"]["secretKey"]
    endpoint = {"url": "http://127.0.0.1:9/hooks", "events": ["session.created", "loyalty.linked"]}
    plain = create_app(app_config)
    refused = plain.test_client().post("/api/v1/webhook-endpoints", json=endpoint, headers=secret(sk))
    assert refused.status_code == 400 and "loyalty.linked" not in str(refused.json["details"]).split("one of:")[1]
    document = plain.test_client().get("/openapi.json").json["components"]["schemas"]
    assert "loyalty" not in document["SessionInfo"]["properties"]["type"]["enum"]
    assert "/api/v1/auth/loyalty" not in plain.test_client().get("/openapi.json").json["paths"]

    served = create_app({**app_config, "ENABLED_GRANTS": "guest,refresh_token,loyalty"})
    client = served.test_client()
    made = client.post("/api/v1/webhook-endpoints", json=endpoint, headers=secret(sk))
    assert made.status_code == 201, made.json
    assert sorted(made.json["events"]) == ["loyalty.linked", "session.created"]
    document = client.get("/openapi.json").json
    assert document["components"]["schemas"]["SessionInfo"]["properties"]["type"]["enum"] == ["guest", "loyalty"]
    assert "loyalty.linked" in document["components"]["schemas"]["WebhookEndpointIn"]["properties"]["events"][
        "items"]["enum"]
    assert client.post("/api/v1/auth/loyalty", headers=publishable(org["keys"]["test"]["publishableKey"])
                       ).status_code == 204
    for made_app in (plain, served):
        made_app.extensions["usher"].db.dispose()


def test_a_plugins_settings_field_is_validated_and_shown_in_the_dashboard(app_config, org, loyalty_installed):
    sk = org["keys"]["test"]["secretKey"]
    plain = create_app(app_config)
    assert "plugins" not in plain.test_client().get("/api/v1/settings", headers=secret(sk)).json  # not enabled
    served = create_app({**app_config, "ENABLED_GRANTS": "guest,refresh_token,loyalty"})
    client, dash = served.test_client(), Dashboard(served.test_client())
    documented = client.get("/openapi.json").json["components"]["schemas"]["Settings"]["properties"]["plugins"]
    assert documented["properties"]["loyaltyPointsPerVisit"]["minimum"] == 1
    form = client.get("/api/v1/settings", headers=secret(sk)).json
    assert form["plugins"] == {"loyaltyPointsPerVisit": 10}  # the declared default
    dash.sign_in(sk)
    page = dash.get("/dashboard/settings").text
    assert 'name="plugins.loyaltyPointsPerVisit"' in page and 'value="10"' in page and "Points a visit earns" in page
    own_fields = as_form({key: value for key, value in form.items() if key != "plugins"})
    refused = dash.post("/dashboard/settings", {**own_fields, "plugins.loyaltyPointsPerVisit": "0"})
    assert refused.status_code == 400 and 'id="plugins.loyaltyPointsPerVisit-error"' in refused.text
    saved = dash.post("/dashboard/settings", {**own_fields, "plugins.loyaltyPointsPerVisit": "25"})
    assert saved.status_code == 303
    assert client.get("/api/v1/settings", headers=secret(sk)).json == {**form, "plugins": {"loyaltyPointsPerVisit": 25}}
    live = org["keys"]["live"]["secretKey"]
    assert client.get("/api/v1/settings", headers=secret(live)).json["plugins"] == {"loyaltyPointsPerVisit": 10}
    for made_app in (plain, served):
        made_app.extensions["usher"].db.dispose()
