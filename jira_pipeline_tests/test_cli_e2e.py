"""The command lines users run (README): `jira-pipeline sync`, the stock Dagster backfill lines, and a
`kill -9` in the middle of a sync — as real processes against the simulator."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from jira_pipeline.cli import run_sync
from jira_pipeline_tests.e2e_support import REPO, assert_matches_truth, pipeline_env

BIN = Path(sys.executable).parent


def run(argv: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        argv, cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, f"{argv} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def test_readme_backfill_lines_run_one_partition_and_ranges(sqlite_url: str, tmp_path: Path, monkeypatch) -> None:
    with pipeline_env(sqlite_url, tmp_path, monkeypatch) as e:
        today = datetime.now(UTC).date().isoformat()
        first = (datetime.now(UTC).date() - timedelta(days=30)).isoformat()
        # one partition with the classic CLI, then ranges as one in-process run each, with both stock CLIs
        run([str(BIN / "dagster"), "asset", "materialize", "-m", "jira_pipeline.definitions",
             "--select", "jira/issues", "--partition", today], e.env)  # fmt: skip
        run([str(BIN / "dagster"), "asset", "materialize", "-m", "jira_pipeline.definitions",
             "--select", "jira/issues", "--partition-range", f"{first}...{today}"], e.env)  # fmt: skip
        run([str(BIN / "dg"), "launch", "--assets", "key:jira/worklogs",
             "--partition-range", f"{first}...{today}"], e.env)  # fmt: skip
        assert_matches_truth(e, tables=("jira_issues", "jira_worklogs"))
        from dagster import AssetKey, DagsterInstance

        with DagsterInstance.get() as instance:
            for name in ("issues", "worklogs"):
                done = instance.get_materialized_partitions(AssetKey(["jira", name]))
                assert {first, today} <= done, f"jira/{name}: {sorted(done)[:3]}..."


def test_sync_cli_exits_nonzero_with_the_remedy_when_the_grant_is_revoked(
    sqlite_url: str, tmp_path: Path, monkeypatch
) -> None:
    with pipeline_env(sqlite_url, tmp_path, monkeypatch) as e:
        e.sim.revoke_all_grants()
        e.sim.set_token_ttl(1)
        # make the stored access token stale so the run must refresh
        from jira_pipeline.warehouse.store import Warehouse

        wh = Warehouse(e.env["JIRA_WAREHOUSE_URL"])
        grant = wh.list_grants()[0]
        with wh.lock_grant(grant["grant_id"]) as row:
            row["access_expires_at"] = datetime.now(UTC) - timedelta(minutes=1)
        proc = subprocess.run(
            [str(BIN / "jira-pipeline"), "sync"], cwd=REPO, env={**os.environ, **e.env},
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert proc.returncode != 0
        assert "jira-pipeline connect" in proc.stdout + proc.stderr
        assert e.env["ATLASSIAN_CLIENT_SECRET"] not in proc.stdout + proc.stderr


def test_kill_9_mid_sync_then_rerun_converges(pg_url: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("JIRA_BATCH_ROWS", "100")  # many small transactions: the kill lands between two
    with pipeline_env(pg_url, tmp_path, monkeypatch, issues=1200, worklogs=3000, latency_ms=40) as e:
        log = open(tmp_path / "sync.log", "w")
        proc = subprocess.Popen(
            [str(BIN / "jira-pipeline"), "sync", "--full"], cwd=REPO, env={**os.environ, **e.env},
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 180
        while e.warehouse.count("jira_issues") == 0:
            assert proc.poll() is None, (tmp_path / "sync.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the sync wrote nothing in 3 minutes"
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        log.close()
        partial = e.warehouse.count("jira_issues")
        assert 0 < partial < 1200, f"killed too late to prove anything ({partial} rows)"
        out = io.StringIO()
        assert run_sync(full=True, out=out), out.getvalue()
        assert_matches_truth(e)
