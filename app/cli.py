"""Flask CLI: thin wrappers over services."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import click
from alembic import command
from alembic.config import Config
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import select

from app.models import Organization
from app.services.orgs import create_organization
from app.tokens.keyring import REFRESH_KEYS, SigningKeyError

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"

db_cli = AppGroup("db", help="Database schema.")
org_cli = AppGroup("org", help="Organizations.")


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade_database(url: str) -> None:
    command.upgrade(alembic_config(url), "head")


@db_cli.command("upgrade")
def db_upgrade():
    """Apply the migrations in migrations/ (idempotent)."""
    upgrade_database(current_app.extensions["usher"].settings.database_url)
    click.echo("database is at the latest revision", err=True)


@org_cli.command("create")
@click.option("--name", required=True, help="The organization's name.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def org_create(name: str, as_json: bool):
    """Create an organization and its four keys (secret values are shown only now)."""
    with current_app.extensions["usher"].db.transaction() as session:
        result = create_organization(session, current_app.extensions["usher"].settings.app_secret, name)
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(f"organization {result['organizationId']}")
        for mode, keys in result["keys"].items():
            click.echo(f"  {mode}: publishable {keys['publishableKey']}")
            click.echo(f"  {mode}: secret      {keys['secretKey']}")


@org_cli.command("ensure-dev")
def org_ensure_dev():
    """Create the development organization once, printing its test keys that one time."""
    with current_app.extensions["usher"].db.transaction() as session:
        if session.scalar(select(Organization.id).limit(1)) is not None:
            click.echo("an organization exists already; its keys were printed when it was created", err=True)
            return
        result = create_organization(session, current_app.extensions["usher"].settings.app_secret, "Development")
    keys = result["keys"]["test"]
    click.echo(f"development organization {result['organizationId']} (test mode keys, shown once):")
    click.echo(f"  X-Publishable-Key: {keys['publishableKey']}")
    click.echo(f"  Authorization: Bearer {keys['secretKey']}")


signing_key_cli = AppGroup("signing-key", help="Token signing keys.")


@signing_key_cli.command("rotate")
@click.option("--now", "at_once", is_flag=True,
              help="Sign with the new access key at once (emergency): verifiers that cached the JWKS "
                   "may refuse new tokens until they fetch it again.")
def signing_key_rotate(at_once: bool):
    """Publish a new access key that signs after SIGNING_KEY_LEAD_SECONDS, and a new refresh key.

    Prints one JSON object: each new key's kid and when it starts signing."""
    tokens = current_app.extensions["usher"].auth.tokens
    lead = timedelta(seconds=0 if at_once else current_app.extensions["usher"].settings.signing_key_lead_seconds)
    with current_app.extensions["usher"].db.transaction() as session:
        access = tokens.keyring.rotate(session, lead)
        refresh = tokens.refresh_keyring.rotate(session)
    click.echo(json.dumps({"access": {"kid": access.kid, "activatesAt": _iso(access.activates_at)},
                           "refresh": {"kid": refresh.kid, "activatesAt": _iso(refresh.activates_at)}}))


@signing_key_cli.command("retire")
@click.argument("kid")
def signing_key_retire(kid: str):
    """Withdraw a key at once: tokens it signed stop verifying (a compromised key)."""
    tokens = current_app.extensions["usher"].auth.tokens
    try:
        with current_app.extensions["usher"].db.transaction() as session:
            row = tokens.keyring.retire(session, kid) or tokens.refresh_keyring.retire(session, kid)
    except SigningKeyError as exc:
        raise click.ClickException(str(exc)) from None
    if row is None:
        raise click.ClickException(f"no signing key {kid}")
    tokens.keyring.invalidate()
    tokens.refresh_keyring.invalidate()
    click.echo(json.dumps({"kid": row.kid, "purpose": row.purpose, "state": "retired",
                           "retiredAt": _iso(row.retired_at)}))


@signing_key_cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array.")
def signing_key_list(as_json: bool):
    """Every signing key: kid, purpose, state (next, current, previous, retired) and dates."""
    tokens = current_app.extensions["usher"].auth.tokens
    keys = tokens.keyring.listing() + [key for key in tokens.refresh_keyring.listing()
                                       if key["purpose"] == REFRESH_KEYS]
    if as_json:
        click.echo(json.dumps(keys))
        return
    for key in keys:
        click.echo(f"{key['kid']}  {key['purpose']:<7}  {key['state']:<8}  activates {key['activatesAt']}"
                   f"  published until {key['publishUntil'] or '-'}  retired {key['retiredAt'] or '-'}")


def _iso(value) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


def register_cli(app) -> None:
    app.cli.add_command(db_cli)
    app.cli.add_command(org_cli)
    app.cli.add_command(signing_key_cli)
