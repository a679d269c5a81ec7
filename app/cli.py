"""Flask CLI: thin wrappers over services."""

from __future__ import annotations

import json
from pathlib import Path

import click
from alembic import command
from alembic.config import Config
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import select

from app.models import Organization
from app.services.orgs import create_organization

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
def signing_key_rotate():
    """Add a new signing key and make it current; old keys stay published until their tokens expire."""
    usher = current_app.extensions["usher"]
    with usher.db.transaction() as session:
        kid = usher.auth.tokens.keyring.rotate(session)
    click.echo(kid)


def register_cli(app) -> None:
    app.cli.add_command(db_cli)
    app.cli.add_command(org_cli)
    app.cli.add_command(signing_key_cli)
