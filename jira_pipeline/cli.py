"""`jira-pipeline`: connect | serve | status | keygen | sync | demo (CONTRACT §2-3)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
import webbrowser
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from jira_pipeline.atlassian.oauth import AtlassianError, OAuthConfig
from jira_pipeline.crypto import generate_key, resolve_cipher
from jira_pipeline.grants import GrantManager, grant_health
from jira_pipeline.settings import ConfigError, Settings

log = logging.getLogger("jira_pipeline")


# ---------------------------------------------------------------------------------------------- wiring
def build_grants(settings: Settings) -> GrantManager:
    from jira_pipeline.warehouse.store import Warehouse

    settings.require_client()
    oauth = OAuthConfig(
        client_id=settings.client_id,
        client_secret=settings.client_secret,
        redirect_uri=settings.redirect_uri,
        auth_url=settings.auth_url,
        api_url=settings.api_url,
    )
    warehouse = Warehouse(settings.warehouse_url)
    return GrantManager(warehouse, oauth, resolve_cipher(settings.warehouse_url, settings.token_encryption_key))


def _bind(settings: Settings, host: str | None, port: int | None) -> tuple[str, int]:
    parts = urlsplit(settings.redirect_uri)
    return host or parts.hostname or "127.0.0.1", port or parts.port or (443 if parts.scheme == "https" else 80)


class CallbackServer:
    """uvicorn in a background thread, for `connect` and the demo."""

    def __init__(self, app, host: str, port: int) -> None:
        import uvicorn

        from jira_pipeline.connect.app import install_log_redaction

        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off"))
        install_log_redaction()  # after Config: uvicorn (re)configures its loggers there
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> CallbackServer:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise ConfigError(
                    f"Could not start the callback server on {self.server.config.host}:{self.server.config.port} "
                    "(port in use?). Free the port or pass --port matching JIRA_REDIRECT_URI."
                )
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def connect_once(
    settings: Settings,
    *,
    open_browser: bool,
    timeout: float,
    host: str | None = None,
    port: int | None = None,
    on_url=None,
) -> list[dict]:
    """Run the OAuth flow once: callback server up, print the URL, wait for the grant to be stored.

    Ends early with `ConnectError` when the callback for *our* flow fails (access denied, bad client
    secret, expired state...). Callbacks with an unknown state are ignored: they are not our flow
    (a stale browser tab), and the user may still complete the real one.
    """
    from jira_pipeline.connect.app import ConnectError, Connector, create_app

    grants = build_grants(settings)
    done = threading.Event()
    result: list[dict] = []
    failures: list[ConnectError] = []

    def connected(res) -> None:
        result.extend(res.sites)
        done.set()

    def failed(exc: ConnectError) -> None:
        if exc.kind != "state":
            failures.append(exc)
            done.set()

    connector = Connector(grants, on_connected=[connected], on_failed=[failed])
    bind_host, bind_port = _bind(settings, host, port)
    with CallbackServer(create_app(connector), bind_host, bind_port):
        url = connector.start()
        print("Open this URL to authorize AINexLayer to read your Jira sites:", flush=True)
        print(url, flush=True)
        if on_url is not None:
            on_url(url)
        elif open_browser:
            webbrowser.open(url)
        if not done.wait(timeout):
            raise ConfigError(f"No successful callback within {int(timeout)} s; run `jira-pipeline connect` again.")
    if failures and not result:
        raise failures[0]
    return result


# ---------------------------------------------------------------------------------------------- commands
def cmd_keygen(args: argparse.Namespace) -> int:
    print(generate_key())
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from jira_pipeline.connect.app import Connector, create_app, install_log_redaction

    settings = Settings.from_env()
    host, port = _bind(settings, args.host, args.port)
    app = create_app(Connector(build_grants(settings)))
    config = uvicorn.Config(app, host=host, port=port, log_level="info")
    install_log_redaction()  # after Config, which (re)configures uvicorn's loggers: no codes in access logs
    print(
        f"Jira connector listening on http://{host}:{port} — connect a site at "
        f"http://{host}:{port}/api/v1/auth/jira/connector/add",
        flush=True,
    )
    uvicorn.Server(config).run()
    return 0


def cmd_connect(args: argparse.Namespace) -> int:
    from jira_pipeline.connect.app import ConnectError

    try:
        sites = connect_once(
            Settings.from_env(), open_browser=not args.no_browser, timeout=args.timeout, host=args.host, port=args.port
        )
    except ConnectError as exc:
        print(f"error: {exc.title}. {exc.detail}", file=sys.stderr)
        return 1
    print("Connected: " + ", ".join(f"{s.get('name')} ({s['id']})" for s in sites))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Connected sites and grant health from the table store alone: needs neither the client secret
    nor the encryption key, and never decrypts (so it cannot print) a token."""
    settings = Settings.from_env()
    from jira_pipeline.warehouse.store import Warehouse

    warehouse = Warehouse(settings.warehouse_url)
    grants = warehouse.list_grants()
    print(f"Table store: {warehouse.safe_url}")
    if not grants:
        print("No Jira site is connected. Run `jira-pipeline connect` to connect one.")
        return 1
    now = datetime.now(UTC)
    for row in grants:
        h = grant_health(row, now)
        expires = h["access_expires_at"]
        print(f"grant {h['grant_id']}: {h['status']}")
        for site in row.get("sites") or []:
            print(f"  site:    {site.get('name')} {site.get('url', '')} (cloud id {site['id']})")
        print(f"  scopes:  {' '.join(h['scopes'])}")
        if expires is None:
            print("  access token: none stored")
        else:
            seconds = int((expires - now).total_seconds())
            left = f"in {seconds} s" if seconds >= 0 else f"expired {-seconds} s ago; renewed on next use"
            print(f"  access token expires: {expires:%Y-%m-%d %H:%M:%S} UTC ({left})")
        print(
            f"  grant age: {h['grant_age_days']} days; refreshed {row.get('refresh_count') or 0} times; "
            f"idle expiry {h['inactivity_expiry_at']:%Y-%m-%d}; "
            f"must reconnect before {h['absolute_expiry_at']:%Y-%m-%d}"
        )
        if h["status"] != "active":
            print(f"  {row.get('status_reason') or 'not usable'}. Run `jira-pipeline connect` to consent again.")
        elif h["absolute_expiry_soon"]:
            print("  WARNING: the 365-day limit is near: run `jira-pipeline connect` again.")
    if settings.cloud_ids:
        print(f"JIRA_CLOUD_IDS selects: {', '.join(settings.cloud_ids)}")
    if not any(row.get("status") == "active" for row in grants):
        print("No usable grant: run `jira-pipeline connect` to consent again.")
        return 1
    return 0


def _ensure_dagster_home() -> Path:
    """Use DAGSTER_HOME; default to the embedded instance under data/dagster_home (like `make demo`)."""
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        home = str(Path("data/dagster_home").resolve())
        os.environ["DAGSTER_HOME"] = home
    path = Path(home)
    path.mkdir(parents=True, exist_ok=True)
    config = path / "dagster.yaml"
    if not config.exists():
        local = Path(__file__).resolve().parent.parent / "dagster.local.yaml"
        if local.exists():
            config.write_text(local.read_text())
    return path


def run_sync(full: bool = False, *, out=sys.stdout) -> bool:
    """Run the sync job as a real Dagster run on the configured instance; print a per-table summary."""
    from dagster import DagsterInstance

    from jira_pipeline.definitions import defs
    from jira_pipeline.defs.assets import PARTITIONS
    from jira_pipeline.defs.jobs import current_partition_key

    _ensure_dagster_home()
    job = defs.resolve_job_def("jira_sync_job")
    today = current_partition_key()
    with DagsterInstance.get() as instance:
        if full:
            first = PARTITIONS.get_first_partition_key()
            tags = {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": today}
            print(f"Full sync: one run over partitions {first}...{today}", file=out, flush=True)
            result = job.execute_in_process(instance=instance, tags=tags, raise_on_error=False)
        else:
            print(f"Incremental sync: partition {today} (from each stream's cursor)", file=out, flush=True)
            result = job.execute_in_process(instance=instance, partition_key=today, raise_on_error=False)
        print(f"Dagster run {result.run_id}: {'SUCCESS' if result.success else 'FAILURE'}", file=out)
        print(f"{'table':<15}{'rows':>8}{'inserted':>10}{'updated':>9}{'deleted':>9}{'requests':>10}", file=out)
        latest: dict[str, dict] = {}
        partitions: dict[str, int] = {}
        for event in result.get_asset_materialization_events():
            mat = event.materialization
            table = "jira_" + mat.asset_key.path[-1]
            # A single-run range backfill records one materialization per partition, same metadata each.
            latest[table] = {k: v.value for k, v in mat.metadata.items()}
            partitions[table] = partitions.get(table, 0) + (1 if mat.partition else 0)
        for table, md in latest.items():
            note = f"  ({partitions[table]} partitions)" if partitions[table] > 1 else ""
            print(
                f"{table:<15}{md.get('dagster/row_count', 0):>8}{md.get('inserted', 0):>10}"
                f"{md.get('updated', 0):>9}{md.get('soft_deleted', 0):>9}{md.get('api_requests', 0):>10}{note}",
                file=out,
            )
        if not result.success:
            for event in result.all_events:
                if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
                    print(f"FAILED {event.step_key}: {event.step_failure_data.error.message.strip()}", file=out)
        return result.success


def cmd_sync(args: argparse.Namespace) -> int:
    return 0 if run_sync(args.full) else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from jira_pipeline.demo import run_demo

    return run_demo(issues=args.issues, worklogs=args.worklogs)


# ---------------------------------------------------------------------------------------------- main
def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jira-pipeline", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("connect", help="authorize once through the browser, store the grant, exit")
    p.add_argument("--no-browser", action="store_true", help="print the URL only")
    p.add_argument("--host"), p.add_argument("--port", type=int)
    p.add_argument("--timeout", type=float, default=600, help="seconds to wait for the callback (default 600)")
    p.set_defaults(func=cmd_connect)

    p = sub.add_parser("serve", help="run the connector web app (port of JIRA_REDIRECT_URI, 8000 by default)")
    p.add_argument("--host"), p.add_argument("--port", type=int)
    p.set_defaults(func=cmd_serve)

    sub.add_parser("status", help="connected sites, scopes, token expiry, grant age (no secrets)").set_defaults(
        func=cmd_status
    )
    sub.add_parser("keygen", help="print a new JIRA_TOKEN_ENCRYPTION_KEY").set_defaults(func=cmd_keygen)

    p = sub.add_parser("sync", help="run the incremental sync now as a Dagster run (all four assets)")
    p.add_argument("--full", action="store_true", help="every partition from JIRA_START_DATE, as one run")
    p.set_defaults(func=cmd_sync)

    p = sub.add_parser("demo", help="simulator + connect + full sync on the embedded default")
    p.add_argument("--issues", type=int, default=2000)
    p.add_argument("--worklogs", type=int, default=6000)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args) or 0)
    except (ConfigError, AtlassianError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
