"""Parquet datasets: the latest version per key equals the table store; atomic, schema-stable files."""

from __future__ import annotations

import json
import random
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from jira_pipeline.warehouse import BOOKKEEPING_COLUMNS, TABLES, ParquetSink, Warehouse
from jira_pipeline.warehouse import parquet as parquet_module

T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
CLOUDS = ("aaaaaaaa-0000-4000-8000-000000000001", "bbbbbbbb-0000-4000-8000-000000000002")


def issue(cloud: str, n: int, updated: datetime, rng: random.Random | None = None) -> dict[str, Any]:
    r = rng or random.Random(n)
    return {
        "cloud_id": cloud,
        "id": str(10_000 + n),
        "key": f"K-{n}",
        "project_id": str(100 + n % 3),
        "project_key": "K",
        "issue_type": r.choice(["Task", "Bug"]),
        "status": r.choice(["To Do", "Done"]),
        "status_category": "new",
        "priority": None,
        "summary": r.choice(["alpha", "beta", "gamma ✓"]),
        "description": r.choice([None, "text", "**bold** 🚀"]),
        "reporter_account_id": "acc-1",
        "assignee_account_id": r.choice([None, "acc-2"]),
        "created": T0 - timedelta(days=10),
        "updated": updated,
        "resolution_date": r.choice([None, T0]),
        "labels": r.choice([[], ["x"], ["x", "y"], None]),
        "parent_key": None,
        "url": f"https://s.atlassian.net/browse/K-{n}",
        "fields": {"customfield_1": r.randint(0, 2), "nested": {"a": [1, 2]}},
        "raw": {"id": str(10_000 + n), "v": r.randint(0, 2)},
    }


def project(cloud: str, n: int, rng: random.Random) -> dict[str, Any]:
    return {
        "cloud_id": cloud,
        "id": str(n),
        "key": f"P{n}",
        "name": rng.choice(["Alpha", "Beta"]),
        "project_type_key": "software",
        "is_private": rng.choice([True, False, None]),
        "lead_account_id": None,
        "is_archived": rng.choice([True, False]),
        "url": None,
        "raw": {"id": str(n), "r": rng.randint(0, 1)},
    }


def assert_parquet_matches_store(w: Warehouse, sink: ParquetSink, table: str) -> None:
    """The CONTRACT invariant: latest version per key (by synced_at) == the key's row in the store."""
    spec = TABLES[table]
    stored = {tuple(r[k] for k in spec.key): r for r in w.rows(table)}
    current = {tuple(r[k] for k in spec.key): r for r in sink.read_current(table).to_pylist()}
    assert current.keys() == stored.keys()
    for key, row in stored.items():
        got = current[key]
        for col in (*spec.columns, *BOOKKEEPING_COLUMNS):
            value = got[col]
            if col in spec.json_columns and value is not None:
                value = json.loads(value)
            assert value == row[col], (table, key, col)


@pytest.fixture
def wh(warehouse_url: str) -> Warehouse:
    w = Warehouse(warehouse_url)
    yield w
    w.close()


def test_latest_parquet_version_equals_store_after_random_operations(wh: Warehouse, tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path / "pq")
    rng = random.Random(7)
    clock = {(c, n): T0 for c in CLOUDS for n in range(25)}
    for step in range(30):
        op = rng.random()
        if op < 0.6:
            picked = rng.sample(sorted(clock), rng.randint(1, 15))
            batch = []
            for c, n in picked:
                # older, equal and newer versions, with and without content changes
                updated = clock[(c, n)] + timedelta(minutes=rng.choice([-5, 0, 0, 1, 7]))
                clock[(c, n)] = max(clock[(c, n)], updated)
                batch.append(issue(c, n, updated, rng))
            wh.write_batch("jira_issues", batch, cursor=(CLOUDS[0], "issues", f"s{step}"), sink=sink)
        elif op < 0.8:
            c = rng.choice(CLOUDS)
            keys = [str(10_000 + n) for n in rng.sample(range(25), rng.randint(1, 6))]
            wh.soft_delete("jira_issues", c, keys, sink=sink)
        else:
            c = rng.choice(CLOUDS)
            live = wh.live_keys("jira_issues", c, where={"project_id": ["101"]})
            keep = set(rng.sample(sorted(live), len(live) // 2)) if live else set()
            wh.soft_delete_absent("jira_issues", c, keep, where={"project_id": ["101"]}, sink=sink)
        wp = [project(rng.choice(CLOUDS), rng.randint(1, 5), rng) for _ in range(rng.randint(0, 4))]
        wh.write_batch("jira_projects", wp, sink=sink)
        assert_parquet_matches_store(wh, sink, "jira_issues")
    assert_parquet_matches_store(wh, sink, "jira_projects")
    assert wh.scalar("SELECT count(*) FROM jira_issues WHERE is_deleted") > 0  # the sequence did delete
    assert wh.get_cursor(CLOUDS[0], "issues") is not None


def test_files_are_hive_partitioned_atomic_and_readable(wh: Warehouse, tmp_path: Path) -> None:
    root = tmp_path / "pq"
    sink = ParquetSink(root)
    wh.write_batch("jira_issues", [issue(c, n, T0) for c in CLOUDS for n in range(3)], sink=sink)
    wh.soft_delete("jira_issues", CLOUDS[1], ["10000"], sink=sink)

    files = sorted((root / "jira_issues").rglob("*"))
    assert not [p for p in files if p.name.startswith(".") or p.suffix == ".tmp"]  # no temp leftovers
    parts = [p for p in files if p.is_file()]
    assert len(parts) == 3
    for p in parts:
        assert p.parent.name in {f"cloud_id={c}" for c in CLOUDS}
        assert re.fullmatch(r"part-\d{8}T\d{6}-[0-9a-f]{32}\.parquet", p.name), p.name
        schema = pq.read_schema(p)
        assert "cloud_id" not in schema.names  # the path carries it
        assert schema.equals(TABLES["jira_issues"].arrow_schema, check_metadata=False)

    # Exactly as CONTRACT §5 says consumers read it.
    t = ds.dataset(str(root / "jira_issues"), partitioning="hive").to_table()
    assert t.num_rows == 7 and set(t.column("cloud_id").to_pylist()) == set(CLOUDS)
    assert t.schema.field("updated").type == pa.timestamp("us", tz="UTC")
    assert set(t.column("_batch_id").to_pylist()).__len__() == 2
    assert sink.dataset_uri("jira_issues").startswith("file://")


def _duckdb_current_state_query(root: Path, table: str) -> str:
    """The one-line query documented in parquet.py, pointed at this test's dataset."""
    lines = [ln.strip() for ln in (parquet_module.__doc__ or "").splitlines() if "read_parquet(" in ln]
    assert len(lines) == 1, "parquet.py must document exactly one DuckDB current-state query"
    query = lines[0].replace("data/parquet", root.as_posix())
    return query.replace("jira_issues", table)


def test_documented_duckdb_query_reads_current_state(wh: Warehouse, tmp_path: Path) -> None:
    root = tmp_path / "pq"
    sink = ParquetSink(root)
    wh.write_batch("jira_issues", [issue(c, n, T0) for c in CLOUDS for n in range(4)], sink=sink)
    wh.write_batch(
        "jira_issues", [issue(CLOUDS[0], 1, T0 + timedelta(hours=1), random.Random(99))], sink=sink
    )
    wh.soft_delete("jira_issues", CLOUDS[1], ["10002"], sink=sink)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    result = con.execute(_duckdb_current_state_query(root, "jira_issues"))
    names = [d[0] for d in result.description]
    got = {
        (str(r["cloud_id"]), r["id"]): r
        for r in (dict(zip(names, row, strict=True)) for row in result.fetchall())
    }
    stored = {(r["cloud_id"], r["id"]): r for r in wh.rows("jira_issues")}
    assert got.keys() == stored.keys()
    for key, row in stored.items():
        for col in ("updated", "synced_at", "is_deleted", "summary", "content_hash"):
            assert got[key][col] == row[col], (key, col)
    assert got[(CLOUDS[1], "10002")]["is_deleted"] is True
    assert got[(CLOUDS[0], "10001")]["updated"] == T0 + timedelta(hours=1)


def test_schema_is_stable_when_optional_columns_are_all_null(wh: Warehouse, tmp_path: Path) -> None:
    root = tmp_path / "pq"
    sink = ParquetSink(root)
    wh.write_batch("jira_worklogs", [worklog(1, full=True)], sink=sink)
    wh.write_batch("jira_worklogs", [worklog(2, full=False), worklog(3, full=False)], sink=sink)
    files = sorted((root / "jira_worklogs").rglob("*.parquet"))
    assert len(files) == 2
    schemas = [pq.read_schema(f) for f in files]
    assert schemas[0].equals(schemas[1], check_metadata=False)
    assert schemas[1].field("time_spent_seconds").type == pa.int64()
    assert schemas[1].field("started").type == pa.timestamp("us", tz="UTC")
    t = ds.dataset(str(root / "jira_worklogs"), partitioning="hive").to_table()
    assert t.num_rows == 3
    sql = f"SELECT count(*) FROM read_parquet('{root.as_posix()}/jira_worklogs/**/*.parquet')"
    n = duckdb.connect().execute(sql).fetchone()
    assert n == (3,)
    assert_parquet_matches_store(wh, sink, "jira_worklogs")


def worklog(n: int, *, full: bool) -> dict[str, Any]:
    row: dict[str, Any] = {"cloud_id": CLOUDS[0], "id": str(n), "updated": T0}
    if full:
        row.update(
            issue_id="10001",
            author_account_id="acc-1",
            started=T0,
            time_spent_seconds=60,
            comment="c",
            created=T0,
            raw={"id": str(n)},
        )
    return row


def test_unicode_and_large_text_round_trip_through_parquet(wh: Warehouse, tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path / "pq")
    big = ("Grüße 🚀 日本語 — " * 15_000)[:200_000]
    row = issue(CLOUDS[0], 1, T0)
    row.update(description=big, summary="Ωmega “q”", raw={"big": big, "emoji": "🎉"})
    wh.write_batch("jira_issues", [row], sink=sink)
    cur = sink.read_current("jira_issues").to_pylist()
    assert cur[0]["description"] == big and json.loads(cur[0]["raw"]) == {"big": big, "emoji": "🎉"}
    assert cur[0]["summary"] == "Ωmega “q”"
    assert_parquet_matches_store(wh, sink, "jira_issues")


def test_sink_never_overwrites_and_validates(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path / "pq")
    spec = TABLES["jira_projects"]
    now = datetime.now(UTC)
    row = {c: None for c in spec.columns} | {
        "cloud_id": CLOUDS[0],
        "id": "1",
        "content_hash": "h",
        "is_deleted": False,
        "deleted_at": None,
        "synced_at": now,
    }
    a = sink.write("jira_projects", [row], batch_id="run-1")
    b = sink.write("jira_projects", [row | {"synced_at": now + timedelta(seconds=1)}], batch_id="run-1")
    assert a != b and all(p.exists() for p in a + b)  # same batch id, same second: a second file
    assert sink.write("jira_projects", []) == []
    with pytest.raises(ValueError, match="cloud_id"):
        sink.write("jira_projects", [row | {"cloud_id": "../escape"}])
    with pytest.raises(ValueError, match="synced_at"):
        sink.write("jira_projects", [row | {"synced_at": None}])
    with pytest.raises(ValueError, match="batch_id"):
        sink.write("jira_projects", [row], batch_id="a/b")
    assert len(list((tmp_path / "pq").rglob("*.parquet"))) == 2
