"""Flask CLI: thin wrappers over services."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import sys
from datetime import timedelta
from pathlib import Path
from typing import TextIO

import click
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext
from sqlalchemy import create_engine, make_url, select, text
from sqlalchemy.pool import NullPool

from app.errors import ApiError
from app.models import Organization
from app.models.base import MODES
from app.services import app_secret, audit
from app.services.app_secret import check_fingerprint
from app.services.orgs import create_key_by_cli, create_organization
from app.tokens.keyring import REFRESH_KEYS, SigningKeyError

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"

db_cli = AppGroup("db", help="Database schema.")
org_cli = AppGroup("org", help="Organizations.")


def alembic_config(url: str, plugin_locations: list[str] | None = None) -> Config:
    """Usher's migrations, plus the Alembic branch of every installed grant plugin (its
    `GrantPlugin.migrations` folder; by default read from the installed packages)."""
    if plugin_locations is None:
        from app.registry import load_registry

        plugin_locations = load_registry().migration_locations
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if plugin_locations:  # otherwise Alembic's default, `versions/` of the script location
        config.set_main_option("path_separator", "os")
        config.set_main_option("version_locations", os.pathsep.join([str(MIGRATIONS / "versions"),
                                                                     *plugin_locations]))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


#: pg_advisory_lock key of `db upgrade` (any constant of our own: "usher-up").
UPGRADE_LOCK = 0x7573686572_7570 & 0x7FFFFFFFFFFFFFFF


def upgrade_database(url: str) -> None:
    """Every branch to its head (Usher's and the installed plugins'). On PostgreSQL under an
    advisory lock, so hosts upgrading at once take turns: the second waits (saying so), then finds
    the schema at its heads and does nothing."""
    if make_url(url).get_backend_name() != "postgresql":
        command.upgrade(alembic_config(url), "heads")
        return
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            if not connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": UPGRADE_LOCK}).scalar():
                click.echo("another `db upgrade` holds the upgrade lock: waiting for it", err=True)
                connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": UPGRADE_LOCK})
            connection.commit()
            try:
                command.upgrade(alembic_config(url), "heads")
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": UPGRADE_LOCK})
                connection.commit()
    finally:
        engine.dispose()


def describe_database(url: str) -> str:
    """Which database a command works on: backend, host and database (a SQLite file's path);
    never the user or password."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return f"sqlite {parsed.database or ':memory:'}"
    where = f"{parsed.host or 'localhost'}{f':{parsed.port}' if parsed.port else ''}"
    return f"{parsed.get_backend_name()} {where}/{parsed.database or ''}"


def _naming_the_database(callback):
    """Wrap a command: it first says on stderr which database it works on (stdout stays the
    command's own, e.g. one JSON object). In the app's context, as the command itself is, however
    it is invoked (the flask command, or a test runner)."""
    @functools.wraps(callback)
    def wrapper(*args, **kwargs):
        click.echo(f"database: {describe_database(current_app.extensions['usher'].settings.database_url)}", err=True)
        return callback(*args, **kwargs)
    return with_appcontext(wrapper)


def _name_the_database_in(group: click.Group) -> None:
    for command_ in group.commands.values():
        if isinstance(command_, click.Group):
            _name_the_database_in(command_)
        elif command_.callback is not None and not getattr(command_.callback, "usher_names_db", False):
            wrapped = _naming_the_database(command_.callback)
            wrapped.usher_names_db = True
            command_.callback = wrapped



def next_revision_id(config: Config) -> str:
    """Revisions are numbered 0001, 0002, …: the head's number plus one."""
    script = ScriptDirectory.from_config(config)
    mine = [rev for rev in script.get_revisions("heads") if not rev.branch_labels]  # not a plugin's branch
    head = mine[0].revision if mine else "0"
    digits = re.match(r"\d+", head)  # ids may carry a name after the number (0007_signing_key_stages)
    return f"{int(digits.group() if digits else 0) + 1:04d}"


def create_revision(url: str, message: str, autogenerate: bool, rev_id: str | None = None) -> Path:
    """Write a revision into migrations/versions/; with `autogenerate`, the operations that take the
    database at `url` (which must be at the head) to the models' metadata."""
    from app.db import (
        Base,  # the models' metadata: the only app code a migration run ever sees
    )

    config = alembic_config(url)
    if autogenerate:
        config.attributes["target_metadata"] = Base.metadata
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff:  # generated code, formatted and linted as `make lint` wants it
        config.set_section_option("post_write_hooks", "hooks", "format, lint")
        for name, options in (("format", "format --line-length 120 REVISION_SCRIPT_FILENAME"),
                              ("lint", "check --fix --select I,F401 --quiet REVISION_SCRIPT_FILENAME")):
            config.set_section_option("post_write_hooks", f"{name}.type", "exec")
            config.set_section_option("post_write_hooks", f"{name}.executable", ruff)
            config.set_section_option("post_write_hooks", f"{name}.options", options)
    script = command.revision(config, message=message, autogenerate=autogenerate,
                              rev_id=rev_id or next_revision_id(config))
    assert script is not None and not isinstance(script, list)
    return Path(script.path)


@db_cli.command("upgrade")
def db_upgrade() -> None:
    """Apply the migrations in migrations/ (idempotent)."""
    usher = current_app.extensions["usher"]
    upgrade_database(usher.settings.database_url)
    check_fingerprint(usher.db, usher.settings)  # the first upgrade records APP_SECRET's fingerprint
    click.echo("database is at the latest revision", err=True)


@db_cli.command("revision")
@click.option("-m", "--message", required=True, help="What the revision does (its docstring and file name).")
@click.option("--autogenerate", is_flag=True,
              help="Fill it with what the database at DATABASE_URL (upgraded to the head) lacks to match the models.")
@click.option("--rev-id", help="The revision id (default: the head's number plus one).")
def db_revision(message: str, autogenerate: bool, rev_id: str | None) -> None:
    """Create a migration in migrations/versions/ (review an autogenerated one before committing it)."""
    path = create_revision(current_app.extensions["usher"].settings.database_url, message, autogenerate, rev_id)
    click.echo(path)


@org_cli.command("create")
@click.option("--name", required=True, help="The organization's name.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def org_create(name: str, as_json: bool) -> None:
    """Create an organization and its four keys (secret values are shown only now)."""
    with current_app.extensions["usher"].db.transaction() as session:
        result = create_organization(session, current_app.extensions["usher"].settings.app_secret, name,
                                     actor=audit.CLI)
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(f"organization {result['organizationId']}")
        for mode, keys in result["keys"].items():
            click.echo(f"  {mode}: publishable {keys['publishableKey']}")
            click.echo(f"  {mode}: secret      {keys['secretKey']}")


org_keys_cli = AppGroup("keys", help="API keys of an existing organization.")
org_cli.add_command(org_keys_cli)


@org_keys_cli.command("create")
@click.option("--org", "organization_id", required=True, help="The organization's id (org_…).")
@click.option("--mode", type=click.Choice(MODES), required=True)
@click.option("--type", "key_type", type=click.Choice(["secret", "publishable"]), required=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def org_keys_create(organization_id: str, mode: str, key_type: str, as_json: bool) -> None:
    """Issue a key for an existing organization (audited, actor `cli`); its value is shown only now.

    The way back for a mode whose secret keys were all revoked or expired."""
    usher = current_app.extensions["usher"]
    try:
        with usher.db.transaction() as session:
            key, value = create_key_by_cli(session, usher.settings.app_secret, organization_id, mode, key_type)
            made = {"id": key.id, "organizationId": organization_id, "mode": mode, "type": key_type,
                    "last4": key.last4, "createdAt": _iso(key.created_at), "key": value}
    except ApiError as exc:
        raise click.ClickException(f"no organization {organization_id}" if exc.error == "not_found"
                                   else str(exc.message)) from None
    if as_json:
        click.echo(json.dumps(made))
    else:
        click.echo(f"{mode} {key_type} key {made['id']} (shown once): {value}")


@org_cli.command("ensure-dev")
@click.option("--new-keys", is_flag=True, help="The development organization exists: issue it new test keys "
                                                "(`make keys`), shown once.")
def org_ensure_dev(new_keys: bool) -> None:
    """Create the development organization once, printing its test keys that one time."""
    usher = current_app.extensions["usher"]
    with usher.db.transaction() as session:
        existing = session.scalar(select(Organization.id).order_by(Organization.created_at).limit(1))
        if existing is not None and not new_keys:
            click.echo(f"an organization exists already ({existing}); its keys were printed when it was created. "
                       "New test keys: make keys", err=True)
            return
        if existing is None:
            result = create_organization(session, usher.settings.app_secret, "Development", actor=audit.CLI)
            keys, organization_id = result["keys"]["test"], result["organizationId"]
        else:
            organization_id = existing
            keys = {name: create_key_by_cli(session, usher.settings.app_secret, existing, "test", key_type)[1]
                    for name, key_type in (("publishableKey", "publishable"), ("secretKey", "secret"))}
    click.echo(f"development organization {organization_id} (test mode keys, shown once):")
    click.echo(f"  X-Publishable-Key: {keys['publishableKey']}")
    click.echo(f"  Authorization: Bearer {keys['secretKey']}")


signing_key_cli = AppGroup("signing-key", help="Token signing keys.")


@signing_key_cli.command("rotate")
@click.option("--now", "at_once", is_flag=True,
              help="Sign with the new access key at once (emergency): verifiers that cached the JWKS "
                   "may refuse new tokens until they fetch it again.")
def signing_key_rotate(at_once: bool) -> None:
    """Publish a new access key that signs after SIGNING_KEY_LEAD_SECONDS, and a new refresh key.

    Prints one JSON object: each new key's kid and when it starts signing."""
    tokens = current_app.extensions["usher"].auth.tokens
    lead = timedelta(seconds=0 if at_once else current_app.extensions["usher"].settings.signing_key_lead_seconds)
    usher = current_app.extensions["usher"]
    with usher.db.transaction() as session:
        access = tokens.keyring.rotate(session, lead)
        refresh = tokens.refresh_keyring.rotate(session)
        audit.record(session, *audit.PLATFORM, audit.CLI, "signing_key.rotated", ("signing_key", access.kid),
                     {"refreshKid": refresh.kid, "activatesAt": _iso(access.activates_at), "atOnce": at_once},
                     usher.clock())
    click.echo(json.dumps({"access": {"kid": access.kid, "activatesAt": _iso(access.activates_at)},
                           "refresh": {"kid": refresh.kid, "activatesAt": _iso(refresh.activates_at)}}))


@signing_key_cli.command("retire")
@click.argument("kid")
def signing_key_retire(kid: str) -> None:
    """Withdraw a key at once: tokens it signed stop verifying (a compromised key)."""
    tokens = current_app.extensions["usher"].auth.tokens
    try:
        usher = current_app.extensions["usher"]
        with usher.db.transaction() as session:
            row = tokens.keyring.retire(session, kid) or tokens.refresh_keyring.retire(session, kid)
            if row is not None:
                audit.record(session, *audit.PLATFORM, audit.CLI, "signing_key.retired", ("signing_key", row.kid),
                             {"purpose": row.purpose}, usher.clock())
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
def signing_key_list(as_json: bool) -> None:
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


audit_cli = AppGroup("audit", help="The audit log.")


@audit_cli.command("verify")
@click.option("--checkpoints", "checkpoints_file", type=click.File("r"),
              help="Also check the chains against the JSON lines `audit checkpoint` printed earlier.")
def audit_verify(checkpoints_file: TextIO | None) -> None:
    """Recompute every audit hash chain; exit 1 naming the first event that does not match.

    With --checkpoints, also exit 1 when a chain is shorter than, or differs from, a checkpoint
    (truncation or recomputation, which the database alone cannot show)."""
    usher = current_app.extensions["usher"]
    chains = events = checked = 0
    with usher.db.reader() as connection:
        for _org, _mode, count, broken in audit.verify_chains(connection):
            if broken is not None:
                current_app.extensions["usher_metrics"].security_event("audit_chain_broken", at=str(broken))
                click.echo(f"audit chain broken: {broken}", err=True)
                raise SystemExit(1)
            chains, events = chains + 1, events + count
        for number, line in enumerate(checkpoints_file or (), start=1):
            if not line.strip():
                continue
            try:
                checkpoint = json.loads(line)
            except ValueError:
                checkpoint = None
            problem = (audit.verify_checkpoint(connection, usher.settings.app_secret, checkpoint)
                       if isinstance(checkpoint, dict) else "not a JSON object")
            if problem is not None:
                click.echo(f"audit checkpoint line {number}: {problem}", err=True)
                raise SystemExit(1)
            checked += 1
    click.echo(json.dumps({"chains": chains, "events": events, "ok": True,
                           **({"checkpoints": checked} if checkpoints_file else {})}))


@audit_cli.command("checkpoint")
def audit_checkpoint() -> None:
    """Print the head of every chain, signed with a key derived from APP_SECRET (JSON lines).

    Keep the output outside the database (append it to a file elsewhere, regularly); `audit
    verify --checkpoints FILE` then shows a chain cut short or recomputed since."""
    usher = current_app.extensions["usher"]
    with usher.db.reader() as connection:
        for checkpoint in audit.checkpoints(connection, usher.settings.app_secret, usher.clock()):
            click.echo(json.dumps(checkpoint))


secrets_cli = AppGroup("secrets", help="APP_SECRET rotation.")


@secrets_cli.command("rotate")
def secrets_rotate() -> None:
    """Re-seal with APP_SECRET everything an APP_SECRET_FALLBACKS entry sealed, and record APP_SECRET
    as the database's secret (hosts without it then refuse to start). Prints one JSON object.

    Keyed hashes of values stored nowhere (secret and restricted keys, refresh tokens) move on
    their next use: watch `secrets status` before dropping a fallback."""
    usher = current_app.extensions["usher"]
    try:
        result = app_secret.rotate(usher.db, usher.settings)
    except app_secret.RotationError as exc:
        raise click.ClickException(str(exc)) from None
    with usher.db.transaction() as session:
        audit.record(session, *audit.PLATFORM, audit.CLI, "app_secret.rotated", None,
                     {"fingerprint": result["fingerprint"], "resealed": result["resealed"]}, usher.clock())
    click.echo(json.dumps(result))


@secrets_cli.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def secrets_status(as_json: bool) -> None:
    """How many rows still depend on each APP_SECRET_FALLBACKS entry (drop one at 0)."""
    usher = current_app.extensions["usher"]
    result = app_secret.status(usher.db, usher.settings)
    if as_json:
        click.echo(json.dumps(result))
        return
    for fallback in result["fallbacks"] or [{"fingerprint": "(no fallbacks)", "rows": 0}]:
        click.echo(f"{fallback['fingerprint']}  {fallback['rows']} rows")


def register_cli(app: Flask) -> None:
    from app.jobs.cli import register_job_commands

    register_job_commands(app)
    app.cli.add_command(db_cli)
    app.cli.add_command(org_cli)
    app.cli.add_command(signing_key_cli)
    app.cli.add_command(audit_cli)
    app.cli.add_command(secrets_cli)
    _name_the_database_in(app.cli)
