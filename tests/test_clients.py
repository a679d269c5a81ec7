"""Clients nobody here wrote: Redocly lints the OpenAPI document, openapi-python-client generates
an SDK from it, and every flow runs through that SDK alone against a real gunicorn."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import secret
from tests.live import ROOT, http

REDOCLY_VERSION = "2.77.0"  # pinned; installed by npm into a git-ignored cache folder
REDOCLY_DIR = ROOT / ".cache" / f"redocly-cli-{REDOCLY_VERSION}"
GENERATOR = Path(sys.executable).parent / "openapi-python-client"  # pinned in requirements-dev.txt


def redocly() -> Path:
    binary = REDOCLY_DIR / "node_modules" / ".bin" / "redocly"
    if not binary.exists():
        REDOCLY_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--no-save", "--prefix", str(REDOCLY_DIR),
                        f"@redocly/cli@{REDOCLY_VERSION}"], check=True, capture_output=True, timeout=300)
    return binary


@pytest.fixture
def openapi_file(client, tmp_path) -> Path:
    path = tmp_path / "openapi.json"
    path.write_text(json.dumps(client.get("/openapi.json").json, indent=1))
    return path


def test_redocly_recommended_rules_report_no_error_and_no_warning(openapi_file):
    """`redocly.yaml` extends `recommended` and switches no rule off."""
    assert "rules:" not in (ROOT / "redocly.yaml").read_text()
    result = subprocess.run([str(redocly()), "lint", str(openapi_file), "--format=json",
                             "--config", str(ROOT / "redocly.yaml")],
                            check=False, capture_output=True, text=True, timeout=120,
                            cwd=openapi_file.parent)
    report = json.loads(result.stdout)
    assert report["version"] == REDOCLY_VERSION
    assert report["problems"] == [], report["problems"]
    assert report["totals"] == {"errors": 0, "warnings": 0, "ignored": 0}
    assert result.returncode == 0


@pytest.fixture
def sdk(live_server, tmp_path):
    """The package openapi-python-client generates from the live server's /openapi.json."""
    reply = http("GET", live_server.url + "/openapi.json")
    (tmp_path / "openapi.json").write_text(json.dumps(reply.body))
    (tmp_path / "config.yaml").write_text("post_hooks: []\n")  # no formatter run on the output
    result = subprocess.run([str(GENERATOR), "generate", "--path", str(tmp_path / "openapi.json"), "--meta", "none",
                             "--output-path", str(tmp_path / "usher_client"), "--config",
                             str(tmp_path / "config.yaml")], check=False, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert "Warning" not in output and "warning" not in output, output
    sys.path.insert(0, str(tmp_path))
    try:
        yield __import__("usher_client")
    finally:
        sys.path.remove(str(tmp_path))
        for name in [name for name in sys.modules if name == "usher_client" or name.startswith("usher_client.")]:
            del sys.modules[name]


def test_generated_sdk_runs_guest_otp_upgrade_refresh_and_logout(sdk, live_server, actions):
    from usher_client import AuthenticatedClient, Client

    # Modules by who calls (the document's tags): the shop, the merchant's server, its admin.
    from usher_client.api.admin import list_test_otp_messages
    from usher_client.api.merchant_server import create_exchange_code, create_queue
    from usher_client.api.shop import (
        create_guest_session,
        enter_queue,
        exchange_code,
        get_queue_status,
        logout,
        refresh_tokens,
        request_otp,
        verify_otp,
    )
    from usher_client.models import (
        AuthorizeIn,
        Error,
        ExchangeIn,
        LogoutIn,
        LogoutInScope,
        OtpRequestIn,
        OtpVerifyIn,
        QueueIn,
        RefreshIn,
        SessionTokens,
    )

    keys = actions.create_org()["keys"]["test"]
    pk, sk = keys["publishableKey"], keys["secretKey"]
    url = live_server.url
    experience = http("POST", url + "/api/v1/experiences", secret(sk), {"name": "Drop"}).body  # admin setup
    with contextlib.ExitStack() as stack:
        shop = stack.enter_context(Client(base_url=url, headers={"X-Publishable-Key": pk},
                                          raise_on_unexpected_status=True))
        server = stack.enter_context(AuthenticatedClient(base_url=url, token=sk, raise_on_unexpected_status=True))

        def as_consumer(token: str) -> AuthenticatedClient:
            return stack.enter_context(AuthenticatedClient(base_url=url, token=token, headers={"X-Publishable-Key": pk},
                                                           raise_on_unexpected_status=True))

        queue = create_queue.sync(client=server, body=QueueIn(experience_id=experience["id"], name="Main"))
        guest = create_guest_session.sync(client=shop)
        assert isinstance(guest, SessionTokens) and guest.session.type_ == "guest"
        guest_id = guest.session.consumer_id
        assert enter_queue.sync(client=as_consumer(guest.access_token), queue_id=queue.id).position == 1

        sent = request_otp.sync(client=shop, body=OtpRequestIn(email="ann@example.com"))
        assert sent.sent is True
        message = list_test_otp_messages.sync(client=server).data[0]
        assert message.to == "ann@example.com"
        code = re.search(r"\b(\d{6,10})\b", message.body).group(1)
        wrong = verify_otp.sync(client=shop, body=OtpVerifyIn(email="ann@example.com", code="000000"))
        assert isinstance(wrong, Error) and wrong.error == "otp_invalid"
        signed = verify_otp.sync(client=as_consumer(guest.access_token),
                                 body=OtpVerifyIn(email="ann@example.com", code=code))
        assert isinstance(signed, SessionTokens)
        assert signed.session.type_ == "otp" and signed.session.guest_id == guest_id
        assert signed.session.consumer_id.startswith("cons_")
        assert get_queue_status.sync(client=as_consumer(signed.access_token), queue_id=queue.id).position == 1

        pair = refresh_tokens.sync(client=shop, body=RefreshIn(refresh_token=signed.refresh_token))
        assert pair.access_token != signed.access_token
        assert logout.sync_detailed(client=as_consumer(pair.access_token)).status_code == 204  # no body at all
        dead = refresh_tokens.sync(client=shop, body=RefreshIn(refresh_token=pair.refresh_token))
        assert isinstance(dead, Error) and dead.error == "refresh_token_invalid"

        # External sign-in: the merchant's server mints a code, the shop exchanges it.
        minted = create_exchange_code.sync(client=server, body=AuthorizeIn(provider="shop", issuer="https://shop.test",
                                                                           subject="customer-1"))
        external = exchange_code.sync(client=shop, body=ExchangeIn(exchange_code=minted.exchange_code))
        assert isinstance(external, SessionTokens) and external.session.type_ == "external"
        everywhere = logout.sync_detailed(client=as_consumer(external.access_token),
                                          body=LogoutIn(scope=LogoutInScope.GLOBAL))
        assert everywhere.status_code == 204
        replay = exchange_code.sync(client=shop, body=ExchangeIn(exchange_code=minted.exchange_code))
        assert isinstance(replay, Error) and replay.error == "exchange_code_invalid"
