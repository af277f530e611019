"""Shared fixtures: a real PostgreSQL (never skipped) and throwaway databases per test."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import psycopg
import pytest

# Daily partitions start at JIRA_START_DATE, read when the definitions load. Every partition of a range
# run costs Dagster two event-log writes, so the suite starts them shortly before the simulator's history
# (E2E_HISTORY_DAYS) instead of at the contract default 2015-01-01.
E2E_HISTORY_DAYS = 30
os.environ.setdefault("JIRA_START_DATE", (date.today() - timedelta(days=E2E_HISTORY_DAYS + 5)).isoformat())

PG_ADMIN_URL = os.environ.get("JIRA_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")


def _pg_up() -> bool:
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def ensure_postgres() -> None:
    """Make PostgreSQL reachable or fail loudly: the suite must never silently skip it."""
    if _pg_up():
        return
    if shutil.which("pg_lsclusters") and shutil.which("pg_ctlcluster"):
        out = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 4 and parts[3] != "online":
                subprocess.run(
                    ["pg_ctlcluster", "--skip-systemctl-redirect", parts[0], parts[1], "start"],
                    check=False,
                )
        if _pg_up():
            return
    pytest.exit(
        f"PostgreSQL is not reachable at {PG_ADMIN_URL} and could not be started "
        "(pg_ctlcluster missing or failed). Start it, or set JIRA_TEST_PG_ADMIN.",
        returncode=3,
    )


def create_database() -> str:
    """Create an empty database and return its psycopg-3 SQLAlchemy URL."""
    name = f"jp_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{name}"


def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pytest_sessionstart(session: pytest.Session) -> None:
    ensure_postgres()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database (SQLAlchemy URL, psycopg 3 driver)."""
    url = create_database()
    try:
        yield url
    finally:
        drop_database(url)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'warehouse.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def warehouse_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Run a test once on the embedded default (SQLite) and once on real PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'warehouse.db'}"
    else:
        url = create_database()
        try:
            yield url
        finally:
            drop_database(url)
