"""The migrations and the models describe the same schema, and `db revision` writes what differs.

On the suite's database: a SQLite file in the first pass of `make test`, PostgreSQL in the second."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

import app.models  # noqa: F401 (every table on the metadata)
from app.cli import upgrade_database
from app.db import Base
from tests.live import ROOT


def schema_diff(url: str) -> list:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            # Types are compared by default; server defaults too, since migrations state them.
            context = MigrationContext.configure(connection, opts={"compare_server_default": True})
            return compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()


def test_the_migrations_build_exactly_the_models_schema(database_url):
    upgrade_database(database_url)  # at the head already (conftest): applying again changes nothing
    assert schema_diff(database_url) == []


def test_the_migrations_import_no_application_code():
    for path in [*sorted((ROOT / "migrations").rglob("*.py")), ROOT / "migrations" / "script.py.mako"]:
        imports = re.findall(r"^\s*(?:from|import) (\S+)", path.read_text(), re.MULTILINE)
        assert not [name for name in imports if name.split(".")[0] == "app"], (path.name, imports)


def test_db_revision_autogenerates_the_missing_table_and_the_result_applies(tmp_path):
    # A copy of the project, so the revision is written into the copy's migrations/versions/.
    project = tmp_path / "project"
    shutil.copytree(ROOT / "app", project / "app", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "migrations", project / "migrations", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "wsgi.py", project / "wsgi.py")
    url = f"sqlite:///{tmp_path / 'revision.sqlite3'}"
    env = {**os.environ, "DATABASE_URL": url, "APP_SECRET": "migration-test-secret-" + "m" * 32}

    def flask(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=project, env=env,
                              capture_output=True, text=True, timeout=120, check=False)

    assert flask("db", "upgrade").returncode == 0
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE exchange_codes"))
    before = {p.name for p in (project / "migrations" / "versions").glob("*.py")}

    made = flask("db", "revision", "--autogenerate", "-m", "exchange codes again")
    assert made.returncode == 0, made.stderr
    written = {p.name for p in (project / "migrations" / "versions").glob("*.py")} - before
    from alembic.script import ScriptDirectory

    from app.cli import alembic_config

    config = alembic_config(url)
    config.set_main_option("script_location", str(project / "migrations"))
    head_id = ScriptDirectory.from_config(config).get_revisions("heads")[0].down_revision
    head = int(re.match(r"\d+", head_id).group())
    assert written == {f"{head + 1:04d}_exchange_codes_again.py"}
    source = (project / "migrations" / "versions" / written.pop()).read_text()
    assert "op.create_table(" in source and "'exchange_codes'" in source.replace('"', "'")
    assert "sa.DateTime()" in source and "UTCDateTime" not in source
    assert not re.search(r"^\s*(from|import) app\b", source, re.MULTILINE)
    assert f'down_revision = "{head_id}"' in source or f"down_revision = '{head_id}'" in source

    # The written revision applies, and then the database matches the models again.
    applied = flask("db", "upgrade")
    assert applied.returncode == 0, applied.stderr
    assert "exchange_codes" in inspect(engine).get_table_names()
    engine.dispose()
    assert schema_diff(url) == []


def test_migration_files_sort_in_chain_order():
    """Reading migrations/versions/ top to bottom is reading the chain (ids stay as shipped)."""
    from alembic.script import ScriptDirectory

    from app.cli import alembic_config

    script = ScriptDirectory.from_config(alembic_config("sqlite://", plugin_locations=[]))
    chain = [Path(revision.path).name for revision in reversed(list(script.walk_revisions()))]
    assert chain == sorted(chain), chain
