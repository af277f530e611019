"""End to end: simulator + the real OAuth flow + real Dagster runs + SQLite and PostgreSQL + Parquet."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jira_pipeline.atlassian.adf import looks_like_raw_adf
from jira_pipeline.cli import run_sync
from jira_pipeline_tests.e2e_support import assert_matches_truth, pipeline_env


def sync(full: bool = False) -> str:
    out = io.StringIO()
    ok = run_sync(full, out=out)
    assert ok, out.getvalue()
    return out.getvalue()


def synced_at(e, table: str) -> dict[str, datetime]:
    return {r["id"] if "id" in r else r["account_id"]: r["synced_at"] for r in e.warehouse.rows(table)}


def test_full_then_incremental_sync_equals_truth(warehouse_url: str, tmp_path: Path, monkeypatch) -> None:
    with pipeline_env(warehouse_url, tmp_path, monkeypatch) as e:
        summary = sync(full=True)
        assert "jira_issues" in summary and "SUCCESS" in summary
        assert_matches_truth(e)
        huge = [r for r in e.warehouse.rows("jira_issues") if len(r["description"] or "") > 50_000]
        assert len(huge) == 1, "the ~200 KB description must round-trip"
        # custom fields by display name, rich text as Markdown (no raw ADF), options as their value
        custom = [r["custom_fields"] for r in e.warehouse.rows("jira_issues") if r["custom_fields"]]
        criteria = [c["Acceptance criteria"] for c in custom if "Acceptance criteria" in c]
        assert criteria and all(isinstance(v, str) and not looks_like_raw_adf(v) for v in criteria)
        assert any(isinstance(c.get("Severity"), str) for c in custom)

        # The same partition run twice changes nothing: no row is rewritten, no Parquet file is added.
        before = {t: synced_at(e, t) for t in ("jira_issues", "jira_worklogs", "jira_projects")}
        files_before = sorted(Path(e.env["JIRA_PARQUET_DIR"]).rglob("*.parquet"))
        sync()
        first_to = json.loads(e.warehouse.get_cursor(e.cloud_id, "worklogs"))["to"]
        sync()
        # a quiet feed answers until == since: the coverage must not creep backwards run after run
        assert json.loads(e.warehouse.get_cursor(e.cloud_id, "worklogs"))["to"] >= first_to
        assert {t: synced_at(e, t) for t in before} == before
        assert sorted(Path(e.env["JIRA_PARQUET_DIR"]).rglob("*.parquet")) == files_before

        # Jira changes between syncs; one incremental sync converges to the new truth.
        project_to_archive = next(p for p in e.sim.truth(e.cloud_id)["jira_projects"] if not p["is_archived"])["key"]
        user = next(u for u in e.sim.truth(e.cloud_id)["jira_users"] if u["active"])["account_id"]
        changed = e.sim.mutate(
            update_issues=50, create_issues=20, move_issues=3, delete_issues=5,
            add_worklogs=30, update_worklogs=20, delete_worklogs=10,
            archive_project=project_to_archive, deactivate_user=user,
        )  # fmt: skip
        assert len(changed["deleted_issues"]) == 5 and len(changed["moved_issues"]) == 3
        e.sim.advance(120)  # the worklog feed never returns the last minute
        sync()
        assert_matches_truth(e)
        moved = {r["id"]: r for r in e.warehouse.rows("jira_issues")}
        for issue_id in changed["moved_issues"]:
            assert moved[issue_id]["key"] in changed["moved_keys"].values()


@pytest.mark.parametrize("tz", ["Pacific/Kiritimati", "Pacific/Pago_Pago"])
def test_searching_user_far_from_utc_loses_nothing(tz: str, sqlite_url: str, tmp_path: Path, monkeypatch) -> None:
    with pipeline_env(sqlite_url, tmp_path, monkeypatch, user_timezone=tz) as e:
        # A project archived before the first sync: its issues are invisible to search, harvested by key.
        archived = e.sim.truth(e.cloud_id)["jira_projects"][0]["key"]
        e.sim.mutate(archive_project=archived)
        sync(full=True)
        assert any(r["project_key"] == archived for r in e.warehouse.rows("jira_issues"))
        assert_matches_truth(e)
        e.sim.mutate(update_issues=40, create_issues=10, add_worklogs=10)
        e.sim.advance(90)
        sync()
        assert_matches_truth(e)
        # the daily reconciliation job (72-hour look-back + deletion walk) runs and keeps the truth
        e.sim.mutate(delete_issues=2)
        from dagster import DagsterInstance

        from jira_pipeline.definitions import defs
        from jira_pipeline.defs.jobs import current_partition_key

        with DagsterInstance.get() as instance:
            result = defs.resolve_job_def("jira_reconcile_job").execute_in_process(
                instance=instance, partition_key=current_partition_key()
            )
        assert result.success
        checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
        assert checks.get("complete_against_jira") and checks.get("unique_keys") and checks.get("markdown_not_raw_adf")
        assert_matches_truth(e)


def test_sync_converges_under_429_5xx_and_dropped_connections(pg_url: str, tmp_path: Path, monkeypatch) -> None:
    with pipeline_env(pg_url, tmp_path, monkeypatch, retry_after_seconds=1) as e:
        e.sim.set_faults(rate_429=0.1, rate_5xx=0.07, drop_rate=0.03)
        sync(full=True)
        assert e.sim.stats.faults_injected > 0
        assert_matches_truth(e)
        e.sim.mutate(update_issues=20, delete_issues=3, add_worklogs=10, delete_worklogs=5)
        e.sim.advance(90)
        sync()
        e.sim.set_faults()
        assert_matches_truth(e)


def test_old_range_backfill_after_a_newer_sync_regresses_nothing(sqlite_url: str, tmp_path: Path, monkeypatch) -> None:
    from dagster import DagsterInstance

    from jira_pipeline.definitions import defs

    with pipeline_env(sqlite_url, tmp_path, monkeypatch) as e:
        sync(full=True)
        e.sim.mutate(update_issues=60, update_worklogs=30)
        e.sim.advance(90)
        sync()
        assert_matches_truth(e)
        latest = {r["id"]: (r["updated"], r["synced_at"]) for r in e.warehouse.rows("jira_issues")}
        # Backfill an old window (the first ten days) as one single-run range, like the README's CLI line.
        job = defs.resolve_job_def("jira_sync_job")
        start = (datetime.now(UTC) - timedelta(days=30)).date()
        tags = {
            "dagster/asset_partition_range_start": start.isoformat(),
            "dagster/asset_partition_range_end": (start + timedelta(days=9)).isoformat(),
        }
        with DagsterInstance.get() as instance:
            result = job.execute_in_process(instance=instance, tags=tags)
        assert result.success
        assert {r["id"]: (r["updated"], r["synced_at"]) for r in e.warehouse.rows("jira_issues")} == latest
        assert_matches_truth(e)
