"""Applies infra/db/migrations/*.sql in order, once each, recorded in schema_migrations.

Safe when several cold starts race: the whole run holds a transaction-scoped advisory lock, and each
file is applied in its own transaction. An applied file whose content changed is refused.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import psycopg

from stratus.config import PROJECT_ROOT

log = logging.getLogger(__name__)

_LOCK_KEY = 0x5354_5241_5455_53  # "STRATUS"


def migrations_dir() -> Path:
    """The repository's infra/db/migrations, or the copy packaged into the Lambda layer."""
    packaged = Path(__file__).with_name("migrations")
    return packaged if packaged.is_dir() else PROJECT_ROOT / "infra" / "db" / "migrations"


@dataclass(frozen=True)
class Migration:
    version: str
    path: Path
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrationError(RuntimeError):
    pass


def discover(directory: Path | None = None) -> list[Migration]:
    directory = directory or migrations_dir()
    files = sorted(directory.glob("*.sql"))
    if not files:
        raise MigrationError(f"no migrations found in {directory}")
    return [Migration(p.stem, p, p.read_text()) for p in files]


def migrate(url: str, directory: Path | None = None) -> list[str]:
    """Apply pending migrations; returns the versions applied by this call."""
    migrations = discover(directory)
    applied_now: list[str] = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.execute("SELECT pg_advisory_lock(%s)", [_LOCK_KEY])
        try:
            done: dict[str, str] = dict(conn.execute("SELECT version, checksum FROM schema_migrations").fetchall())
            for m in migrations:
                if m.version in done:
                    if done[m.version] != m.checksum:
                        raise MigrationError(f"migration {m.version} changed after it was applied")
                    continue
                with conn.transaction():
                    conn.execute(m.sql)  # trusted file from the repository
                    conn.execute(
                        "INSERT INTO schema_migrations (version, checksum) VALUES (%s, %s)",
                        [m.version, m.checksum],
                    )
                log.info("applied migration %s", m.version)
                applied_now.append(m.version)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", [_LOCK_KEY])
    return applied_now
