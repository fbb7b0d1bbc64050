"""Alembic migrations, run programmatically so ``embedding-studio db upgrade`` needs no alembic.ini."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext

from embedding_studio.db.engine import get_engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


@dataclass(frozen=True)
class SchemaUpgrade:
    """Where an upgrade started and ended, so a caller can say when it actually migrated something."""

    previous_revision: str | None
    revision: str | None

    @property
    def changed(self) -> bool:
        return self.previous_revision != self.revision


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def upgrade_database(revision: str = "head") -> SchemaUpgrade:
    """Bring the schema to ``revision``; safe to call on every start (a no-op when current)."""
    config = alembic_config()
    engine = get_engine()
    with engine.begin() as connection:
        previous = MigrationContext.configure(connection).get_current_revision()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        return SchemaUpgrade(previous, MigrationContext.configure(connection).get_current_revision())


def current_revision() -> str | None:
    with get_engine().connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
