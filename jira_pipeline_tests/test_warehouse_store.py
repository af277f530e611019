"""Table store semantics on SQLite and PostgreSQL: upserts, version rule, soft deletes, cursors."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from jira_pipeline.warehouse import TABLES, ParquetSink, Warehouse

T0 = datetime(2024, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
CLOUD = "11111111-2222-3333-4444-555555555555"


def issue(i: int, updated: datetime = T0, cloud: str = CLOUD, **kw: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "cloud_id": cloud,
        "id": str(10000 + i),
        "key": f"PRJ-{i}",
        "project_id": "100" if i % 2 else "200",
        "project_key": "PRJ",
        "issue_type": "Task",
        "status": "To Do",
        "status_category": "new",
        "priority": "Medium",
        "summary": f"Issue {i}",
        "description": "Some *markdown*",
        "reporter_account_id": "acc-1",
        "assignee_account_id": None,
        "created": T0 - timedelta(days=3),
        "updated": updated,
        "resolution_date": None,
        "labels": ["a", "b"],
        "parent_key": None,
        "url": f"https://example.atlassian.net/browse/PRJ-{i}",
        "fields": {"customfield_10010": {"value": "x"}, "n": i},
        "raw": {"id": str(10000 + i), "key": f"PRJ-{i}"},
    }
    row.update(kw)
    return row


def project(i: int, **kw: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "cloud_id": CLOUD,
        "id": str(i),
        "key": f"P{i}",
        "name": f"Project {i}",
        "project_type_key": "software",
        "is_private": False,
        "lead_account_id": "acc-1",
        "is_archived": False,
        "url": f"https://example.atlassian.net/browse/P{i}",
        "raw": {"id": str(i)},
    }
    row.update(kw)
    return row


@pytest.fixture
def wh(warehouse_url: str) -> Warehouse:
    w = Warehouse(warehouse_url)
    yield w
    w.close()


def by_id(w: Warehouse, table: str = "jira_issues") -> dict[str, dict[str, Any]]:
    key = TABLES[table].id_column
    return {r[key]: r for r in w.rows(table)}


def test_insert_update_unchanged_counts(wh: Warehouse) -> None:
    r = wh.write_batch("jira_issues", [issue(i) for i in range(5)])
    assert (r.inserted, r.updated, r.unchanged, r.deleted) == (5, 0, 0, 0)
    assert len(r.rows) == 5 and all(x["is_deleted"] is False for x in r.rows)

    batch = [issue(i) for i in range(7)]
    batch[0] = issue(0, updated=T0 + timedelta(minutes=1), summary="changed")
    r = wh.write_batch("jira_issues", batch)
    assert (r.inserted, r.updated, r.unchanged) == (2, 1, 4)
    assert {x["id"] for x in r.rows} == {"10000", "10005", "10006"}
    stored = by_id(wh)
    assert stored["10000"]["summary"] == "changed"
    assert len(stored) == 7
    assert wh.duplicate_keys("jira_issues") == 0


def test_older_version_never_overwrites_newer(wh: Warehouse) -> None:
    wh.write_batch("jira_issues", [issue(1, updated=T0 + timedelta(hours=1), summary="new")])
    r = wh.write_batch("jira_issues", [issue(1, updated=T0, summary="old")])
    assert (r.inserted, r.updated, r.unchanged) == (0, 0, 1)
    assert by_id(wh)["10001"]["summary"] == "new"
    # Same `updated`, different content: the later write wins (Jira edits within one timestamp).
    r = wh.write_batch("jira_issues", [issue(1, updated=T0 + timedelta(hours=1), summary="newer")])
    assert r.updated == 1 and by_id(wh)["10001"]["summary"] == "newer"


def test_duplicates_within_one_batch_keep_newest(wh: Warehouse) -> None:
    batch = [
        issue(1, updated=T0 + timedelta(minutes=5), summary="newest"),
        issue(1, updated=T0, summary="old"),
        issue(2, summary="first"),
        issue(2, summary="second"),
    ]
    r = wh.write_batch("jira_issues", batch)
    assert (r.inserted, r.updated, r.unchanged) == (2, 0, 2)
    stored = by_id(wh)
    assert stored["10001"]["summary"] == "newest"
    assert stored["10002"]["summary"] == "second"


def test_same_batch_twice_changes_nothing(wh: Warehouse) -> None:
    batch = [issue(i) for i in range(20)]
    wh.write_batch("jira_issues", batch, cursor=(CLOUD, "issues", "c1"))
    before = wh.rows("jira_issues")
    r = wh.write_batch("jira_issues", batch, synced_at=datetime.now(UTC) + timedelta(days=1))
    assert (r.inserted, r.updated, r.unchanged, r.rows) == (0, 0, 20, [])
    assert wh.rows("jira_issues") == before  # synced_at and content_hash untouched


def test_unversioned_table_updates_on_content_change(wh: Warehouse) -> None:
    wh.write_batch("jira_projects", [project(1), project(2)])
    r = wh.write_batch("jira_projects", [project(1), project(2, is_archived=True)])
    assert (r.inserted, r.updated, r.unchanged) == (0, 1, 1)
    assert by_id(wh, "jira_projects")["2"]["is_archived"] is True


def test_soft_delete_and_undelete_by_newer_version(wh: Warehouse) -> None:
    wh.write_batch("jira_issues", [issue(i) for i in range(3)])
    gone_at = datetime(2024, 3, 2, tzinfo=UTC)
    r = wh.soft_delete("jira_issues", CLOUD, ["10000", "10001", "99999"], deleted_at=gone_at)
    assert (r.deleted, r.unchanged) == (2, 1)
    assert all(x["is_deleted"] and x["deleted_at"] == gone_at for x in r.rows)
    assert wh.soft_delete("jira_issues", CLOUD, ["10000"]).deleted == 0  # already deleted
    assert wh.live_keys("jira_issues", CLOUD) == {"10002"}
    assert len(wh.rows("jira_issues", CLOUD, include_deleted=False)) == 1

    # An older version must not resurrect the row ...
    r = wh.write_batch("jira_issues", [issue(0, updated=T0 - timedelta(days=1))])
    assert r.unchanged == 1 and by_id(wh)["10000"]["is_deleted"] is True
    # ... the same or a newer one does (Jira returned it again, so it exists).
    r = wh.write_batch("jira_issues", [issue(0), issue(1, updated=T0 + timedelta(seconds=1))])
    assert r.updated == 2
    stored = by_id(wh)
    assert stored["10000"]["is_deleted"] is False and stored["10000"]["deleted_at"] is None
    assert wh.live_keys("jira_issues", CLOUD) == {"10000", "10001", "10002"}


def test_soft_delete_absent_respects_scope(wh: Warehouse) -> None:
    wh.write_batch("jira_issues", [issue(i) for i in range(6)])  # odd -> project 100, even -> 200
    wh.write_batch("jira_issues", [issue(1, cloud="other-cloud")])
    r = wh.soft_delete_absent("jira_issues", CLOUD, {"10001"}, where={"project_id": ["100"]})
    assert r.deleted == 2 and {x["id"] for x in r.rows} == {"10003", "10005"}
    assert wh.live_keys("jira_issues", CLOUD) == {"10000", "10001", "10002", "10004"}
    assert wh.live_keys("jira_issues", "other-cloud") == {"10001"}
    assert wh.soft_delete_absent("jira_issues", CLOUD, set(), where={"project_id": []}).deleted == 0
    assert wh.live_keys("jira_issues", CLOUD, where={"project_id": ["200"]}) == {"10000", "10002", "10004"}


def test_cursor_committed_with_its_batch(wh: Warehouse, tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path / "pq")
    wh.write_batch("jira_issues", [issue(1)], cursor=(CLOUD, "issues", "v1"), sink=sink)
    assert wh.get_cursor(CLOUD, "issues") == "v1"
    files_before = sorted((tmp_path / "pq").rglob("*"))

    # The sink fails half-way (second site's partition path is blocked by a file): nothing of the
    # batch may survive - no rows, no cursor, no Parquet file of the first site.
    blocked = tmp_path / "pq" / "jira_issues" / "cloud_id=zzz-blocked"
    blocked.write_text("not a directory")
    batch = [issue(2), issue(3, cloud="zzz-blocked")]
    with pytest.raises(OSError):
        wh.write_batch("jira_issues", batch, cursor=(CLOUD, "issues", "v2"), sink=sink)
    assert set(by_id(wh)) == {"10001"}
    assert wh.get_cursor(CLOUD, "issues") == "v1"
    assert sorted(p for p in (tmp_path / "pq").rglob("*") if p != blocked) == files_before

    wh.set_cursor(CLOUD, "issues", "v3")
    assert wh.get_cursor(CLOUD, "issues") == "v3"
    assert wh.get_cursor(CLOUD, "nope") is None


def test_commit_failure_after_sink_discards_files(wh: Warehouse, tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path / "pq")

    def refuse_commit(conn: Any) -> None:
        raise RuntimeError("simulated commit failure")

    event.listen(wh.engine, "commit", refuse_commit)
    try:
        with pytest.raises(RuntimeError, match="simulated commit failure"):
            wh.write_batch("jira_issues", [issue(1)], cursor=(CLOUD, "issues", "x"), sink=sink)
    finally:
        event.remove(wh.engine, "commit", refuse_commit)
    assert list((tmp_path / "pq").rglob("*.parquet")) == []
    assert wh.rows("jira_issues") == [] and wh.get_cursor(CLOUD, "issues") is None


def test_timestamps_are_aware_utc_round_trip(wh: Warehouse) -> None:
    ist = timezone(timedelta(hours=5, minutes=30))
    local = datetime(2024, 3, 1, 17, 30, 0, 654321, tzinfo=ist)
    wh.write_batch(
        "jira_issues",
        [issue(1, updated=local, created="2024-01-01T10:00:00.000+0000", resolution_date=None)],
    )
    row = by_id(wh)["10001"]
    assert row["updated"] == local and row["updated"].utcoffset() == timedelta(0)
    assert row["updated"].microsecond == 654321
    assert row["created"] == datetime(2024, 1, 1, 10, tzinfo=UTC) and row["created"].tzinfo is not None
    assert row["synced_at"].utcoffset() == timedelta(0)
    # Comparison in SQL must be chronological after normalisation: 12:00:00.654321 UTC < 12:00:01Z.
    r = wh.write_batch("jira_issues", [issue(1, updated="2024-03-01T12:00:01Z", summary="later")])
    assert r.updated == 1

    with pytest.raises(ValueError, match="naive"):
        wh.write_batch("jira_issues", [issue(2, updated=datetime(2024, 1, 1))])
    with pytest.raises(ValueError, match="naive"):
        wh.write_batch("jira_issues", [issue(2, created="2024-01-01")])


def test_missing_key_and_unknown_columns_are_refused(wh: Warehouse) -> None:
    bad = issue(1)
    del bad["id"]
    with pytest.raises(ValueError, match=r"jira_issues.*'id'"):
        wh.write_batch("jira_issues", [issue(0), bad])
    with pytest.raises(ValueError, match=r"jira_issues.*'updated'"):
        wh.write_batch("jira_issues", [issue(2, updated=None)])
    with pytest.raises(ValueError, match=r"jira_users.*'account_id'"):
        wh.write_batch("jira_users", [{"cloud_id": CLOUD, "display_name": "x"}])
    with pytest.raises(ValueError, match="unknown column"):
        wh.write_batch("jira_issues", [issue(3, bogus=1)])
    with pytest.raises(ValueError, match="unknown entity table"):
        wh.write_batch("jira_nope", [])
    assert wh.rows("jira_issues") == []  # nothing of a refused batch was written


def test_column_types_jsonb_and_timestamptz(wh: Warehouse) -> None:
    if wh.dialect == "postgresql":
        with wh.engine.connect() as conn:
            types = {
                (t, c): d
                for t, c, d in conn.execute(
                    sa.text(
                        "SELECT table_name, column_name, data_type FROM information_schema.columns "
                        "WHERE table_name LIKE 'jira_%'"
                    )
                )
            }
        for table, col in [
            ("jira_issues", "raw"),
            ("jira_issues", "fields"),
            ("jira_issues", "labels"),
            ("jira_users", "raw"),
            ("jira_oauth_grants", "scopes"),
            ("jira_oauth_states", "payload"),
        ]:
            assert types[(table, col)] == "jsonb", (table, col)
        for table, col in [
            ("jira_issues", "updated"),
            ("jira_worklogs", "started"),
            ("jira_sync_state", "updated_at"),
        ]:
            assert types[(table, col)] == "timestamp with time zone", (table, col)
        assert types[("jira_issues", "is_deleted")] == "boolean"
    else:
        with wh.engine.connect() as conn:
            declared = {r[1]: r[2] for r in conn.exec_driver_sql("PRAGMA table_info(jira_issues)")}
        assert declared["raw"] == "JSON" and declared["updated"] == "DATETIME"
    wh.write_batch("jira_issues", [issue(7)])
    row = by_id(wh)["10007"]
    assert row["labels"] == ["a", "b"] and row["fields"]["customfield_10010"] == {"value": "x"}
    if wh.dialect == "postgresql":
        assert wh.scalar("SELECT raw->>'key' FROM jira_issues WHERE id = :i", i="10007") == "PRJ-7"
        assert wh.scalar("SELECT jsonb_typeof(labels) FROM jira_issues") == "array"


def test_unicode_and_large_text_round_trip(wh: Warehouse) -> None:
    big = ("ünïcødé ✓ 🚀 中文 " * 12_000)[:200_000]
    assert len(big.encode()) > 200_000
    emoji_fields = {"customfield_1": "😀", "nested": {"ключ": ["值", "🎉"]}}
    wh.write_batch(
        "jira_issues",
        [
            issue(
                1,
                summary="Ωmega — “quotes” \u2028 tab\t",
                description=big,
                fields=emoji_fields,
                raw={"d": big},
            )
        ],
    )
    row = by_id(wh)["10001"]
    assert row["description"] == big and row["raw"]["d"] == big
    assert row["summary"] == "Ωmega — “quotes” \u2028 tab\t"
    assert row["fields"] == emoji_fields
    # NUL cannot be stored by PostgreSQL; it is dropped on both dialects so they agree.
    wh.write_batch("jira_issues", [issue(2, summary="a\x00b", raw={"x": "c\x00d"})])
    row = by_id(wh)["10002"]
    assert row["summary"] == "ab" and row["raw"] == {"x": "cd"}


def test_worklogs_and_users(wh: Warehouse) -> None:
    wl = {
        "cloud_id": CLOUD,
        "id": "5001",
        "issue_id": "10001",
        "author_account_id": "acc-1",
        "started": T0,
        "time_spent_seconds": 3600,
        "comment": "did *things*",
        "created": T0,
        "updated": T0,
        "raw": {"id": "5001"},
    }
    assert wh.write_batch("jira_worklogs", [wl]).inserted == 1
    assert wh.write_batch("jira_worklogs", [{**wl, "time_spent_seconds": 7200}]).updated == 1
    assert by_id(wh, "jira_worklogs")["5001"]["time_spent_seconds"] == 7200
    user = {
        "cloud_id": CLOUD,
        "account_id": "acc-1",
        "account_type": "atlassian",
        "display_name": "Zoë",
        "email_address": None,
        "active": True,
        "time_zone": "Europe/Berlin",
        "raw": {"accountId": "acc-1"},
    }
    assert wh.write_batch("jira_users", [user]).inserted == 1
    assert wh.soft_delete_absent("jira_users", CLOUD, set()).deleted == 1
    assert wh.write_batch("jira_users", [user]).updated == 1  # seen again -> live again


def test_large_batch_is_chunked(wh: Warehouse) -> None:
    n = 1_300  # above one chunk on both dialects
    r = wh.write_batch("jira_issues", [issue(i) for i in range(n)], cursor=(CLOUD, "issues", "n"))
    assert (r.inserted, len(r.rows)) == (n, n)
    r = wh.write_batch("jira_issues", [issue(i, updated=T0 + timedelta(seconds=1)) for i in range(n)])
    assert r.updated == n
    assert wh.soft_delete("jira_issues", CLOUD, [str(10000 + i) for i in range(n)]).deleted == n
    assert wh.scalar("SELECT count(*) FROM jira_issues WHERE is_deleted") == n


def test_safe_url_masks_password(tmp_path: Path) -> None:
    w = Warehouse("postgresql+psycopg://jira:s3cr3t-pw@127.0.0.1:1/db", create=False)
    assert "s3cr3t-pw" not in w.safe_url and "s3cr3t-pw" not in repr(w)
    assert w.dialect == "postgresql"
    with pytest.raises(ValueError, match="unsupported"):
        Warehouse("mysql://u:s3cr3t-pw@h/db", create=False)
    try:
        Warehouse("mysql://u:s3cr3t-pw@h/db", create=False)
    except ValueError as e:
        assert "s3cr3t-pw" not in str(e)
    # The SQLite default makes its parent directory and runs in WAL mode.
    s = Warehouse(f"sqlite:///{tmp_path / 'deep' / 'dir' / 'w.db'}")
    assert s.scalar("PRAGMA journal_mode") == "wal"
    assert s.scalar("PRAGMA busy_timeout") >= 30_000
    s.ping()


def test_concurrent_writers_newest_version_wins(wh: Warehouse) -> None:
    """Overlapping runs write versions of the same keys in random order: the newest survives."""
    keys = range(40)

    def writer(seed: int) -> dict[int, int]:
        rng = random.Random(seed)
        newest: dict[int, int] = {}
        for _ in range(6):
            batch = []
            for k in keys:
                v = rng.randrange(60)
                newest[k] = max(newest.get(k, -1), v)
                batch.append(issue(k, updated=T0 + timedelta(minutes=v), summary=f"v{v}"))
            rng.shuffle(batch)
            wh.write_batch("jira_issues", batch)
        return newest

    with ThreadPoolExecutor(4) as ex:
        seen = list(ex.map(writer, range(4)))
    stored = by_id(wh)
    assert len(stored) == len(keys) and wh.duplicate_keys("jira_issues") == 0
    for k in keys:
        best = max(s[k] for s in seen)
        row = stored[str(10000 + k)]
        assert row["summary"] == f"v{best}" and row["updated"] == T0 + timedelta(minutes=best)
