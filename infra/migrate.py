"""Apply the schema migrations in infra/migrations with yoyo-migrations.

Why yoyo: plain versioned .sql files (reviewable, no ORM), a migration log table, and a lock so two processes
starting at once (make run, a test session, a deploy step) never apply the same migration twice.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pymysql
from yoyo import get_backend, read_migrations

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def _server_url_and_database(database_url: str) -> tuple[str, str]:
    parts = urlsplit(database_url)
    return urlunsplit(parts._replace(path="/")), parts.path.lstrip("/")


def _server_connection(database_url: str) -> pymysql.Connection:
    parts = urlsplit(database_url)
    return pymysql.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=parts.username or "root",
        password=parts.password or "",
        connect_timeout=5,
    )


def create_database_if_missing(database_url: str) -> None:
    _, database = _server_url_and_database(database_url)
    connection = _server_connection(database_url)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                f"CREATE DATABASE IF NOT EXISTS `{database}` "
                "DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
            )
    finally:
        connection.close()


def drop_database(database_url: str) -> None:
    """Drop the database, every booking in it: for `make reset` and the test sessions' own databases."""
    _, database = _server_url_and_database(database_url)
    connection = _server_connection(database_url)
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{database}`")
    finally:
        connection.close()


def migrate(database_url: str) -> int:
    """Create the database if needed and apply pending migrations; returns how many were applied."""
    create_database_if_missing(database_url)
    backend = get_backend(database_url)
    migrations = read_migrations(str(MIGRATIONS_DIR))
    with backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    return len(pending)


def main() -> None:
    from chalicelib.config import Settings

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", default=Settings.from_env().database_url)
    args = parser.parse_args()
    applied = migrate(args.database_url)
    print(f"migrations: {applied} applied to {urlsplit(args.database_url).path.lstrip('/')}")


if __name__ == "__main__":
    main()
