"""Alembic environment. The caller (`flask --app wsgi db upgrade` / `db revision`, see app/cli.py)
gives the URL, and the models' metadata only when autogenerating: applying the migrations imports
no application code, so a revision once written keeps working whatever app/ becomes."""

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import create_engine, pool
from sqlalchemy.types import TypeDecorator

config = context.config
target_metadata = config.attributes.get("target_metadata")


def render_item(type_: str, obj: object, autogen_context: AutogenContext) -> str | bool:
    """Write an application column type as the type it stores (`UTCDateTime` is a `DateTime`), so a
    generated revision needs `sa` only."""
    if type_ == "type" and isinstance(obj, TypeDecorator):
        return f"sa.{obj.impl_instance!r}"
    return False


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True, render_as_batch=True, render_item=render_item)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(config.get_main_option("sqlalchemy.url"), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True,
                          render_item=render_item)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
