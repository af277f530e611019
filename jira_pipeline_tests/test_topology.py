"""The production topology, natively: every service of docker-compose.yml as a real process on 127.0.0.1.

PostgreSQL-backed Dagster from the production dagster.yaml (its `env:` settings pointed at a fresh test
database), the code server, webserver and daemon started with the commands of docker-compose.yml, the
connector app (`jira-pipeline serve`) and the Jira simulator. The test then does what an operator does
after `docker compose up`: connect a site through the connector's /add page, launch a partition backfill
of `jira_sync_job` the way the UI does (GraphQL `launchPartitionBackfill`, executed by the daemon's
backfill loop and run queue), wait for it through the webserver, check the rows in PostgreSQL and the
schedules the UI lists, and stop everything with SIGTERM, leaving no process behind.

The environment mirrors docker-compose.yml's least-privilege split: the webserver and the daemon get
only Dagster's storage settings (`x-dagster-storage-env`), no Atlassian credentials, token key or
JIRA_START_DATE; the code server and the connector get the pipeline's settings as well.

The schedules are checked (listed, RUNNING by default) and then paused through GraphQL before the
daemon starts, so that no tick of theirs can put a second run in flight; the test then asserts the
backfill's run is the only run of the instance.

Timing on 2 cores: services ready in ~12-20 s; the backfill ~60-95 s (one run of ~35-55 s, most of it
spent starting a process per step, plus up to 30 s for the daemon's backfill loop to notice the end);
shutdown ~5-10 s. 85 s on a quiet machine, ~2 min with other test suites running beside it.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from signal import SIGTERM
from typing import Any

import psycopg
import pytest
import requests
import yaml
from sqlalchemy.engine import make_url

from jira_pipeline_tests.topology_support import (
    BIN,
    REPO,
    DagsterGraphQL,
    SimTruth,
    Supervisor,
    day_window,
    descendants,
    free_port,
    in_windows,
    run_error_report,
    session_members,
    still_alive,
    wait_for,
)

LOCATION = "jira_pipeline"  # workspace.yaml's location_name = [tool.dagster] code_location_name
SITE_TAG = "jira/cloud_id"
SCHEDULES = ("jira_incremental_schedule", "jira_reconcile_schedule", "jira_grant_keepalive_schedule")
JOBS = ("jira_sync_job", "jira_reconcile_job", "jira_grant_keepalive_job")
ADD_PATH = "/api/v1/auth/jira/connector/add"
CALLBACK_PATH = "/api/v1/auth/jira/connector/callback"
#: Partitions start this many days back: each partition costs Dagster event-log writes when the
#: partition set is read, so 2015-01-01 (the contract default) would only slow the daemon down.
START_DAYS_AGO = 40
#: The simulator spreads its history over this many days before now, all inside the partitions.
HISTORY_DAYS = 30
#: Partitions in the backfill, today's included.
BACKFILL_DAYS = 5
BACKFILL_TIMEOUT = 240.0

WORKSPACE_QUERY = """
query Workspace {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on PythonError { message stack }
          ... on RepositoryLocation {
            repositories {
              name
              jobs { name isAssetJob runTags { key value } }
              schedules { name cronSchedule executionTimezone pipelineName scheduleState { id status } }
              partitionSets { name pipelineName }
            }
          }
        }
      }
    }
    ... on PythonError { message stack }
  }
}
"""

DAEMONS_QUERY = """
query Daemons {
  instance { daemonHealth { allDaemonStatuses { daemonType required healthy } } }
}
"""

STOP_SCHEDULE_MUTATION = """
mutation Stop($id: String!) {
  stopRunningSchedule(id: $id) {
    __typename
    ... on ScheduleStateResult { scheduleState { status } }
    ... on Error { message }
  }
}
"""

LAUNCH_MUTATION = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
    ... on PythonError { stack }
  }
}
"""

BACKFILL_QUERY = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status numPartitions partitionNames error { message stack } }
    ... on Error { message }
  }
}
"""

RUNS_QUERY = """
query Runs($filter: RunsFilter!) {
  runsOrError(filter: $filter) {
    __typename
    ... on Runs { results { runId status jobName tags { key value } } }
    ... on Error { message }
  }
}
"""

UNFINISHED = {"QUEUED", "NOT_STARTED", "MANAGED", "STARTING", "STARTED", "CANCELING"}
BACKFILL_IN_FLIGHT = {"REQUESTED", "CANCELING", "FAILING"}


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[Supervisor]:
    """Every service of the test; stopped (trees included) even when the test fails half-way."""
    logs = tmp_path / "logs"
    logs.mkdir()
    sup = Supervisor(logs)
    try:
        yield sup
    finally:
        sup.stop(grace=15)


def _compose_command(service: str) -> list[str]:
    return list(
        yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))["services"][service]["command"]
    )


def _set_option(argv: list[str], flags: tuple[str, ...], value: str) -> list[str]:
    """argv with the value of the first of `flags` replaced: the compose command, re-pointed at 127.0.0.1."""
    out = list(argv)
    for i, token in enumerate(out):
        if token in flags:
            out[i + 1] = value
            return out
    raise AssertionError(f"{argv} has none of {flags}")


def _executable(argv: list[str]) -> list[str]:
    return [str(BIN / argv[0]), *argv[1:]]


def _storage_env(pg_url: str, home: Path) -> dict[str, str]:
    """docker-compose.yml's `x-dagster-storage-env`, for the test database."""
    url = make_url(pg_url)
    return {
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": url.host or "127.0.0.1",
        "DAGSTER_PG_PORT": str(url.port or 5432),
        "DAGSTER_PG_USERNAME": url.username or "",
        "DAGSTER_PG_PASSWORD": url.password or "",
        "DAGSTER_PG_DB": url.database or "",
    }


def _base_env() -> dict[str, str]:
    """The test's environment minus every setting of the project or of Dagster: each service gets only
    what docker-compose.yml gives its container, so a service that silently needs more fails here."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JIRA_", "ATLASSIAN_", "DAGSTER_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _psycopg_url(pg_url: str) -> str:
    return make_url(pg_url).set(drivername="postgresql").render_as_string(hide_password=False)


def _live_ids(pg_url: str, table: str, id_column: str, cloud_id: str) -> set[str]:
    with psycopg.connect(_psycopg_url(pg_url)) as conn:
        rows = conn.execute(
            f"SELECT {id_column} FROM {table} WHERE cloud_id = %s AND NOT is_deleted", (cloud_id,)
        ).fetchall()
    return {str(r[0]) for r in rows}


def _diff(what: str, got: set[str], want: set[str]) -> str:
    missing, extra = sorted(want - got)[:10], sorted(got - want)[:10]
    return f"{what}: {len(got)} rows, expected {len(want)}; missing {missing}, extra {extra}"


def _tags(run: dict[str, Any]) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["tags"]}


def test_production_topology_end_to_end(tmp_path: Path, pg_url: str, supervisor: Supervisor) -> None:
    t0 = time.monotonic()
    timings: dict[str, float] = {}
    today = datetime.now(UTC).date()
    start_date = today - timedelta(days=START_DAYS_AGO)
    # A few past days plus today's partition, contiguous: with BackfillPolicy.single_run that is ONE run
    # over the whole range (docs/PRODUCTION.md, "Backfills"). It contains now, so it also takes the
    # incremental path and harvests the archived projects. One run, not one per day: every run costs
    # ~30-40 s on 2 cores, most of it spawning a process per step.
    partitions = [(today - timedelta(days=d)).isoformat() for d in range(BACKFILL_DAYS - 1, -1, -1)]

    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    code_port, web_port, connector_port = free_port(), free_port(), free_port()
    workspace = yaml.safe_load((REPO / "workspace.yaml").read_text(encoding="utf-8"))
    (entry,) = workspace["load_from"]
    assert entry["grpc_server"]["location_name"] == LOCATION
    entry["grpc_server"].update(host="127.0.0.1", port=code_port)
    workspace_file = tmp_path / "workspace.yaml"
    workspace_file.write_text(yaml.safe_dump(workspace), encoding="utf-8")

    base = _base_env()
    storage = {**base, **_storage_env(pg_url, home)}
    parquet_dir = tmp_path / "parquet"
    connector = f"http://127.0.0.1:{connector_port}"
    redirect_uri = f"{connector}{CALLBACK_PATH}"

    # --- the simulator, its own process ------------------------------------------------------------
    truth_file = tmp_path / "sim-truth.json"
    supervisor.start(
        "simulator",
        [
            str(BIN / "python"), "-m", "jira_pipeline_tests.topology_support", "simulator",
            "--port", "0", "--issues", "200", "--worklogs", "600", "--history-days", str(HISTORY_DAYS),
            "--redirect-uri", redirect_uri, "--truth-file", str(truth_file),
        ],
        base,
        REPO,
    )  # fmt: skip
    wait_for(lambda: truth_file.exists() or supervisor.assert_running(), 60, "the simulator", supervisor.logs)
    truth = SimTruth.load(truth_file)

    keygen = subprocess.run(
        [str(BIN / "jira-pipeline"), "keygen"], env=base, capture_output=True, text=True, timeout=60, check=True
    )
    pipeline = {
        **storage,
        # .env (ATLASSIAN_*/JIRA_* of .env.example), pointed at the simulator
        "ATLASSIAN_CLIENT_ID": truth.client_id,
        "ATLASSIAN_CLIENT_SECRET": truth.client_secret,
        "ATLASSIAN_AUTH_URL": truth.url,
        "ATLASSIAN_API_URL": truth.url,
        "JIRA_REDIRECT_URI": redirect_uri,
        "JIRA_TOKEN_ENCRYPTION_KEY": keygen.stdout.strip(),
        "JIRA_START_DATE": start_date.isoformat(),
        # docker-compose.yml's `x-pipeline-env`: the same database as Dagster's storage
        "JIRA_WAREHOUSE_URL": pg_url,
        "JIRA_PARQUET_DIR": str(parquet_dir),
    }

    # --- code server and connector (they need only PostgreSQL and the simulator) -------------------
    code_cmd = _compose_command("code-server")
    code_cmd = _set_option(code_cmd, ("-h", "--host"), "127.0.0.1")
    code_cmd = _set_option(code_cmd, ("-p", "--port"), str(code_port))
    supervisor.start("code-server", _executable(code_cmd), pipeline, tmp_path)
    conn_cmd = _compose_command("connector")
    conn_cmd = _set_option(conn_cmd, ("--host",), "127.0.0.1")
    conn_cmd = _set_option(conn_cmd, ("--port",), str(connector_port))
    supervisor.start("connector", _executable(conn_cmd), pipeline, tmp_path)

    def code_server_healthy() -> bool:
        supervisor.assert_running()
        probe = subprocess.run(
            [str(BIN / "dagster"), "api", "grpc-health-check", "-p", str(code_port)],
            env=storage,
            capture_output=True,
            timeout=60,
        )
        return probe.returncode == 0

    wait_for(code_server_healthy, 120, "the code server's gRPC health check", supervisor.logs)
    timings["code server healthy"] = time.monotonic() - t0

    # --- the webserver: docker-compose.yml starts it once code-server is healthy --------------------
    web_cmd = _compose_command("webserver")
    web_cmd = _set_option(web_cmd, ("-h", "--host"), "127.0.0.1")
    web_cmd = _set_option(web_cmd, ("-p", "--port"), str(web_port))
    web_cmd = _set_option(web_cmd, ("-w", "--workspace"), str(workspace_file))
    supervisor.start("webserver", _executable(web_cmd), storage, tmp_path)

    # --- connect the site through the connector app, as a browser would ----------------------------
    def connector_healthy() -> bool:
        supervisor.assert_running()
        return requests.get(f"{connector}/healthz", timeout=5).json() == {"status": "ok"}

    wait_for(connector_healthy, 60, "the connector's /healthz", supervisor.logs)
    page = requests.get(f"{connector}{ADD_PATH}", timeout=60)  # follows /add -> /authorize -> /callback
    assert page.status_code == 200, f"{page.status_code} {page.url}\n{page.text[:2000]}\n{supervisor.logs()}"
    hops = [r.headers["Location"] for r in page.history]
    assert len(hops) == 2 and hops[0].startswith(f"{truth.url}/authorize?") and hops[1].startswith(redirect_uri), hops
    assert "Jira connected" in page.text and truth.site_name in page.text and truth.cloud_id in page.text, page.text

    status = subprocess.run(
        [str(BIN / "jira-pipeline"), "status"], env=pipeline, capture_output=True, text=True, timeout=60
    )
    assert status.returncode == 0 and truth.cloud_id in status.stdout, status.stdout + status.stderr
    for secret in (truth.client_secret, pipeline["JIRA_TOKEN_ENCRYPTION_KEY"]):
        assert secret not in status.stdout + status.stderr

    # --- the webserver: location loaded, jobs and schedules listed, daemons healthy -----------------
    gql = DagsterGraphQL(f"http://127.0.0.1:{web_port}")

    def server_info() -> bool:
        supervisor.assert_running()
        return requests.get(f"{gql.base_url}/server_info", timeout=5).status_code == 200

    wait_for(server_info, 120, "the webserver's /server_info", supervisor.logs)

    def loaded_repository() -> dict[str, Any] | None:
        data = gql(WORKSPACE_QUERY)["workspaceOrError"]
        assert data["__typename"] == "Workspace", data
        (location,) = data["locationEntries"]
        assert location["name"] == LOCATION, location
        if location["loadStatus"] != "LOADED":
            return None
        loaded = location["locationOrLoadError"]
        assert loaded["__typename"] == "RepositoryLocation", loaded
        (repository,) = loaded["repositories"]
        return repository

    repository = wait_for(loaded_repository, 60, f"code location {LOCATION} in the webserver", supervisor.logs)
    timings["webserver ready"] = time.monotonic() - t0
    jobs = {j["name"]: j for j in repository["jobs"]}
    assert set(JOBS) <= set(jobs), sorted(jobs)
    assert {"key": SITE_TAG, "value": "all"} in jobs["jira_sync_job"]["runTags"]
    schedules = {s["name"]: s for s in repository["schedules"]}
    assert set(SCHEDULES) <= set(schedules), sorted(schedules)
    for name in SCHEDULES:
        # default_status=RUNNING: a fresh deployment syncs without anyone switching schedules on.
        assert schedules[name]["scheduleState"]["status"] == "RUNNING", schedules[name]
        assert schedules[name]["executionTimezone"] == "UTC"
    assert schedules["jira_incremental_schedule"]["cronSchedule"] == "*/30 * * * *"
    assert schedules["jira_incremental_schedule"]["pipelineName"] == "jira_sync_job"
    (partition_set,) = [p for p in repository["partitionSets"] if p["pipelineName"] == "jira_sync_job"]
    # Now pause them, as an operator would in the UI. With the daemon up, a */30 tick falls inside the
    # test about one run in twenty; its run would queue behind the backfill's and still be running at
    # shutdown, which makes the test slower and its clean-shutdown assertion depend on the clock.
    for name in SCHEDULES:
        stopped = gql(STOP_SCHEDULE_MUTATION, {"id": schedules[name]["scheduleState"]["id"]})["stopRunningSchedule"]
        assert stopped["__typename"] == "ScheduleStateResult", stopped
        assert stopped["scheduleState"]["status"] == "STOPPED", stopped

    # --- the backfill, launched as the UI launches it; the daemon submits and dequeues its runs ----
    # Launched before the daemon starts (compose starts it with the webserver; a few seconds later is
    # the same topology): its backfill loop runs at start and then every 30 s, so this saves up to 30 s,
    # and it shows that nothing but the daemon moves a backfill.
    launched = gql(
        LAUNCH_MUTATION,
        {
            "params": {
                "selector": {
                    "partitionSetName": partition_set["name"],
                    "repositorySelector": {"repositoryName": repository["name"], "repositoryLocationName": LOCATION},
                },
                "partitionNames": partitions,
                "title": "topology test",
            }
        },
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]
    runs_filter = {"tags": [{"key": "dagster/backfill", "value": backfill_id}]}

    def runs() -> list[dict[str, Any]]:
        data = gql(RUNS_QUERY, {"filter": runs_filter})["runsOrError"]
        assert data["__typename"] == "Runs", data
        return data["results"]

    def failure_report() -> str:
        try:
            current = runs()
        except Exception as exc:
            return f"(runs unavailable: {exc})\n{supervisor.logs()}"
        reports = [run_error_report(gql, r["runId"]) for r in current if r["status"] != "SUCCESS"]
        summary = [(r["runId"], r["status"], {k: v for k, v in _tags(r).items() if "partition" in k}) for r in current]
        return f"runs: {summary}\n" + "\n".join(reports) + "\n" + supervisor.logs()

    backfill = gql(BACKFILL_QUERY, {"id": backfill_id})["partitionBackfillOrError"]
    assert backfill["status"] == "REQUESTED" and backfill["numPartitions"] == len(partitions), backfill
    assert runs() == [], "a backfill must not start runs before the daemon picks it up"

    daemon_cmd = _set_option(_compose_command("daemon"), ("-w", "--workspace"), str(workspace_file))
    supervisor.start("daemon", _executable(daemon_cmd), storage, tmp_path)

    def backfill_done() -> dict[str, Any] | None:
        supervisor.assert_running()
        backfill = gql(BACKFILL_QUERY, {"id": backfill_id})["partitionBackfillOrError"]
        assert backfill["__typename"] == "PartitionBackfill", backfill
        current = runs()
        if backfill["status"] in BACKFILL_IN_FLIGHT or not current or any(r["status"] in UNFINISHED for r in current):
            return None
        return backfill

    backfill = wait_for(backfill_done, BACKFILL_TIMEOUT, f"backfill {backfill_id}", failure_report)
    timings["backfill done"] = time.monotonic() - t0
    final_runs = runs()
    assert backfill["status"] == "COMPLETED_SUCCESS" and backfill["error"] is None, f"{backfill}\n{failure_report()}"
    assert all(r["status"] == "SUCCESS" for r in final_runs), failure_report()
    (run,) = final_runs
    tags = _tags(run)
    assert run["jobName"] == "jira_sync_job"
    assert tags[SITE_TAG] == "all", tags  # so the per-site queue limit applies to backfills too
    # One run over the whole range (single-run backfill policy), not one run per day.
    assert (tags.get("dagster/asset_partition_range_start"), tags.get("dagster/asset_partition_range_end")) == (
        partitions[0],
        partitions[-1],
    ), tags
    everything = gql(RUNS_QUERY, {"filter": {}})["runsOrError"]["results"]
    assert [r["runId"] for r in everything] == [run["runId"]], f"runs besides the backfill's: {everything}"
    # DefaultRunLauncher: the run worker is a child of the code server, so its log lines land there.
    assert run["runId"] in supervisor["code-server"].log.read_text(errors="replace"), supervisor.logs()

    # --- the rows, in the same PostgreSQL as Dagster's storage --------------------------------------
    # The run's window contains now, so it reads open-ended: everything updated since its first day.
    windows = [(day_window(partitions[0])[0], datetime.max.replace(tzinfo=UTC))]
    want_issues = {
        issue_id
        for issue_id, (project_id, updated) in truth.issues.items()
        # Search finds live projects' issues by `updated`; today's run harvests archived projects whole.
        if truth.projects[project_id] or in_windows(updated, windows)
    }
    want_worklogs = {w for w, updated in truth.worklogs.items() if in_windows(updated, windows)}
    assert want_issues and want_worklogs and len(want_issues) < len(truth.issues), "window choice proves nothing"
    checks = [
        ("jira_projects", "id", set(truth.projects)),
        ("jira_users", "account_id", truth.users),
        ("jira_issues", "id", want_issues),
        ("jira_worklogs", "id", want_worklogs),
    ]
    problems = []
    for table, column, want in checks:
        got = _live_ids(pg_url, table, column, truth.cloud_id)
        if got != want:
            problems.append(_diff(table, got, want))
    assert not problems, "\n".join(problems)
    for table in ("jira_issues", "jira_worklogs"):
        assert any((parquet_dir / table).rglob("*.parquet")), f"no Parquet under {parquet_dir / table}"
    with psycopg.connect(_psycopg_url(pg_url)) as conn:
        dagster_tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"runs", "event_logs", "bulk_actions", "jobs"} <= dagster_tables, "Dagster's storage is not in this database"

    daemons = gql(DAEMONS_QUERY)["instance"]["daemonHealth"]["allDaemonStatuses"]
    health = {d["daemonType"]: d["healthy"] for d in daemons if d["required"]}
    for daemon in ("SCHEDULER", "QUEUED_RUN_COORDINATOR", "BACKFILL"):
        assert health.get(daemon) is True, health

    # --- shut down: SIGTERM, whole trees, nothing left ----------------------------------------------
    sessions = supervisor.sessions
    tracked = {p.pid: p for p in [*session_members(sessions), *descendants(sessions)]}.values()
    stop_started = time.monotonic()
    supervisor.stop(grace=30)
    timings["shutdown"] = time.monotonic() - stop_started
    outcome = {s.name: s.outcome for s in supervisor.services}
    assert not any(s.killed for s in supervisor.services), f"SIGTERM did not suffice: {outcome}\n{supervisor.logs()}"
    # uvicorn (the connector) re-raises the SIGTERM it handled once it has shut down: -15 is clean.
    bad_exit = {s.name: s.proc.returncode for s in supervisor.services if s.proc.returncode not in (0, -SIGTERM)}
    assert not bad_exit, f"{bad_exit}\n{supervisor.logs()}"  # the simulator exits 1 if a handler crashed
    assert supervisor["simulator"].proc.returncode == 0, supervisor.logs()
    stray = [p for p in session_members(sessions) if p.state != "Z"] + still_alive(tracked)
    assert not stray, "stray processes:\n" + "\n".join(map(str, stray))
    timings["total"] = time.monotonic() - t0
    print(f"{len(tracked)} processes stopped: {outcome}; timings (s): { {k: round(v, 1) for k, v in timings.items()} }")


def test_supervisor_reports_a_process_that_ignores_sigterm(tmp_path: Path) -> None:
    """Negative control for the shutdown assertions: a tree whose child ignores SIGTERM (even in a
    session of its own) must be reported as killed, and nothing of it may survive stop()."""
    sup = Supervisor(tmp_path)
    service = sup.start(
        "stubborn",
        ["/bin/sh", "-c", "sh -c 'trap \"\" TERM; sleep 60' & sleep 60 & wait"],
        {"PATH": os.environ.get("PATH", "")},
        tmp_path,
    )
    wait_for(lambda: len(session_members(sup.sessions)) >= 4, 10, "the stub tree", sup.logs)
    tracked = {p.pid: p for p in [*session_members(sup.sessions), *descendants(sup.sessions)]}.values()
    sup.stop(grace=1)
    assert service.killed and service.leftovers, service.outcome
    assert any("trap" in p.cmdline for p in service.leftovers), service.outcome
    assert not still_alive(tracked) and not [p for p in session_members(sup.sessions) if p.state != "Z"]


def test_day_window_and_in_windows() -> None:
    """The expected-row arithmetic above relies on these two; a bug here would fake a pass."""
    start, end = day_window("2024-03-01", 3)
    assert (start, end) == (datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 3, 4, tzinfo=UTC))
    assert in_windows(datetime(2024, 3, 3, 23, 59, tzinfo=UTC), [(start, end)])
    assert not in_windows(end, [(start, end)])
