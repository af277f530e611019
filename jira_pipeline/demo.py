"""`make demo`: the bundled Jira simulator, the real OAuth flow (driven headlessly), and a full sync
on the embedded default (SQLite + local Parquet), recorded as Dagster runs under data/dagster_home."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import requests


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_demo(*, issues: int = 2000, worklogs: int = 6000, seed: int = 1) -> int:
    try:
        from jira_pipeline_tests.simulator import SimConfig, Simulator
    except ImportError:
        print("The demo needs the bundled simulator (jira_pipeline_tests); run it from a source checkout.")
        return 2

    from datetime import UTC, datetime, timedelta

    from jira_pipeline.cli import _ensure_dagster_home, connect_once, run_sync
    from jira_pipeline.settings import Settings
    from jira_pipeline.warehouse.store import Warehouse

    callback_port = _free_port()
    redirect_uri = f"http://127.0.0.1:{callback_port}/api/v1/auth/jira/connector/callback"
    config = SimConfig(seed=seed, issues=issues, worklogs=worklogs, redirect_uris=(redirect_uri,))
    # The simulator's history spans `history_days`; start the daily partitions just before it. Every
    # partition of a range costs Dagster two event-log writes, so 2015 would add minutes to the demo.
    start_date = (datetime.now(UTC) - timedelta(days=config.history_days + 1)).date().isoformat()
    os.environ.setdefault("JIRA_START_DATE", start_date)
    print(f"Starting the Jira simulator ({issues} issues, {worklogs} worklogs, seed {seed})...", flush=True)
    with Simulator(config) as sim:
        sim.start(port=0)
        os.environ.update(
            {
                "ATLASSIAN_CLIENT_ID": config.client_id,
                "ATLASSIAN_CLIENT_SECRET": config.client_secret,
                "ATLASSIAN_AUTH_URL": sim.url,
                "ATLASSIAN_API_URL": sim.url,
                "JIRA_REDIRECT_URI": redirect_uri,
            }
        )
        os.environ.setdefault("JIRA_WAREHOUSE_URL", "sqlite:///data/warehouse.db")
        os.environ.setdefault("JIRA_PARQUET_DIR", "data/parquet")
        os.environ.setdefault("DAGSTER_HOME", str(Path("data/dagster_home").resolve()))
        _ensure_dagster_home()
        settings = Settings.from_env()

        print(f"Simulator at {sim.url}; connecting through the OAuth flow (browser simulated)...", flush=True)

        def browser(url: str) -> None:
            # What a browser does: follow /authorize's 302 (auto-consent) to our callback.
            response = requests.get(url, timeout=30)
            if response.status_code != 200:
                raise RuntimeError(f"callback page answered {response.status_code}: {response.text[:300]}")

        sites = connect_once(settings, open_browser=False, timeout=60, on_url=browser)
        print("Connected: " + ", ".join(f"{s.get('name')} ({s['id']})" for s in sites), flush=True)

        print("Running the full sync as a Dagster run...", flush=True)
        ok = run_sync(full=True)
        if not ok:
            print("The sync failed; see the errors above.")
            return 1

        warehouse = Warehouse(settings.warehouse_url)
        print()
        print("Rows per table (live / soft-deleted):")
        for table in ("jira_projects", "jira_users", "jira_issues", "jira_worklogs"):
            live = warehouse.count(table, include_deleted=False)
            total = warehouse.count(table, include_deleted=True)
            print(f"  {table:<15} {live:>7} / {total - live}")
        parquet = Path(settings.parquet_dir).resolve()
        print(f"Table store: {warehouse.safe_url}")
        print(f"Parquet datasets: {parquet}/<table>/cloud_id=<site>/*.parquet")
        print(f"Dagster instance: {os.environ['DAGSTER_HOME']}")
        print("Open the Dagster UI on this instance with: make ui   (then http://127.0.0.1:3000)")
    return 0
