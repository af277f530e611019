"""Shared pieces of the end-to-end tests: a simulator-backed pipeline environment and truth checks."""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from jira_pipeline.atlassian.adf import adf_to_markdown
from jira_pipeline.crypto import generate_key
from jira_pipeline.settings import Settings
from jira_pipeline.warehouse.parquet import ParquetSink
from jira_pipeline.warehouse.store import Warehouse
from jira_pipeline.warehouse.tables import TABLES
from jira_pipeline_tests.conftest import E2E_HISTORY_DAYS
from jira_pipeline_tests.simulator import SimConfig, Simulator

REPO = Path(__file__).resolve().parent.parent

COMPARE = {
    "jira_projects": (
        "key", "name", "project_type_key", "is_private", "lead_account_id", "is_archived", "url",
    ),
    "jira_users": ("account_type", "display_name", "email_address", "active", "time_zone"),
    "jira_issues": (
        "key", "project_id", "project_key", "issue_type", "status", "status_category", "priority", "summary",
        "description", "reporter_account_id", "assignee_account_id", "created", "updated", "resolution_date",
        "labels", "parent_key", "url",
    ),
    "jira_worklogs": (
        "issue_id", "author_account_id", "started", "time_spent_seconds", "comment", "created", "updated",
    ),
}  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Env:
    sim: Simulator
    env: dict[str, str]
    warehouse: Warehouse
    parquet: ParquetSink

    @property
    def cloud_id(self) -> str:
        return self.sim.sites[0].cloud_id


def sim_config(**overrides: Any) -> SimConfig:
    base: dict[str, Any] = dict(
        seed=7, issues=250, worklogs=700, users=30, projects=4, history_days=E2E_HISTORY_DAYS, comments_per_issue=0.5
    )
    base.update(overrides)
    return SimConfig(**base)


@contextmanager
def pipeline_env(
    warehouse_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **sim_overrides: Any
) -> Iterator[Env]:
    """A running simulator, env vars pointing the pipeline at it, a fresh Dagster home, a connected grant."""
    redirect = f"http://127.0.0.1:{free_port()}/api/v1/auth/jira/connector/callback"
    cfg = sim_config(redirect_uris=(redirect,), **sim_overrides)
    with Simulator(cfg) as sim:
        sim.start(port=0)
        home = tmp_path / "dagster_home"
        home.mkdir()
        shutil.copy(REPO / "dagster.local.yaml", home / "dagster.yaml")
        env = {
            "ATLASSIAN_CLIENT_ID": cfg.client_id,
            "ATLASSIAN_CLIENT_SECRET": cfg.client_secret,
            "ATLASSIAN_AUTH_URL": sim.url,
            "ATLASSIAN_API_URL": sim.url,
            "JIRA_REDIRECT_URI": redirect,
            "JIRA_WAREHOUSE_URL": warehouse_url,
            "JIRA_PARQUET_DIR": str(tmp_path / "parquet"),
            "JIRA_TOKEN_ENCRYPTION_KEY": generate_key(),
            "DAGSTER_HOME": str(home),
            "JIRA_START_DATE": os.environ["JIRA_START_DATE"],
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("JIRA_CLOUD_IDS", raising=False)
        connect(Settings.from_env())
        yield Env(sim, env, Warehouse(warehouse_url), ParquetSink(env["JIRA_PARQUET_DIR"]))


def connect(settings: Settings) -> None:
    """The real connect flow; the 'browser' follows /authorize's redirect to our callback."""
    from jira_pipeline.cli import connect_once

    def browser(url: str) -> None:
        response = requests.get(url, timeout=30)
        assert response.status_code == 200, response.text

    connect_once(settings, open_browser=False, timeout=30, on_url=browser)


def expected_row(table: str, truth: dict[str, Any]) -> dict[str, Any]:
    row = {c: truth.get(c) for c in COMPARE[table]}
    if table == "jira_issues":
        row["description"] = adf_to_markdown(truth["description_adf"]) if truth.get("description_adf") else None
    if table == "jira_worklogs":
        row["comment"] = adf_to_markdown(truth["comment_adf"]) if truth.get("comment_adf") else None
    return row


def assert_matches_truth(e: Env, tables: tuple[str, ...] | None = None) -> None:
    """Every live key and every compared contract column equals the simulator's truth; keys Jira deleted
    are soft-deleted; nothing else is live; Parquet's current state equals the table."""
    truth = e.sim.truth(e.cloud_id)
    deleted = e.sim.deleted(e.cloud_id)
    for table, rows in truth.items():
        if tables is not None and table not in tables:
            continue
        id_col = TABLES[table].id_column
        stored = {r[id_col]: r for r in e.warehouse.rows(table, e.cloud_id)}
        live = {k for k, r in stored.items() if not r["is_deleted"]}
        want = {str(r[id_col]) for r in rows}
        assert live == want, (
            f"{table}: missing {sorted(want - live)[:10]} extra {sorted(live - want)[:10]} ({len(want)} expected)"
        )
        mismatches = []
        for truth_row in rows:
            got = stored[str(truth_row[id_col])]
            exp = expected_row(table, truth_row)
            diff = {c: (got[c], exp[c]) for c in exp if got[c] != exp[c]}
            if diff:
                mismatches.append((truth_row[id_col], diff))
        assert not mismatches, f"{table}: {len(mismatches)} rows differ, e.g. {str(mismatches[:3])[:2000]}"
        for key in deleted.get(table, set()) & set(stored):
            assert stored[key]["is_deleted"] and stored[key]["deleted_at"] is not None, (
                f"{table} {key} not soft-deleted"
            )
        assert e.warehouse.duplicate_keys(table) == 0
    assert_parquet_equals_table(e, tables)


def assert_parquet_equals_table(e: Env, tables: tuple[str, ...] | None = None) -> None:
    for table, spec in TABLES.items():
        if tables is not None and table not in tables:
            continue
        current = e.parquet.read_current(table).to_pylist()
        by_key = {tuple(str(r[k]) for k in spec.key): r for r in current}
        stored = e.warehouse.rows(table)
        assert len(by_key) == len(stored), f"{table}: parquet has {len(by_key)} keys, table {len(stored)}"
        for row in stored:
            pq = by_key[tuple(str(row[k]) for k in spec.key)]
            for col in (*COMPARE[table], "is_deleted", "synced_at"):
                value = json.loads(pq[col]) if col in spec.json_columns and pq[col] is not None else pq[col]
                assert value == row[col], f"{table} {row[spec.id_column]} column {col}: {value!r} != {row[col]!r}"
