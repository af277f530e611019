"""The refresh-token rotation race, run and measured: real OS processes against the simulator.

Atlassian rotates the refresh token on every refresh; presenting a rotated-out one after the
leeway (~10 min at Atlassian; 0 s here, the harshest setting) revokes the whole grant. Dagster runs
every step in its own process, so the pipeline is only safe if, of all processes finding the same
stale access token, exactly one calls the token endpoint and the others pick up what it stored.

`run_race` connects a grant through the real `Connector` (authorize -> callback -> code exchange),
marks its access token stale, and releases ``procs`` fresh interpreters (subprocesses) at once. Each
builds its own `Warehouse` and `GrantManager` from the URL and runs ``cycles`` cycles of: get a
token through the GrantManager (a new `GrantTokenProvider` each cycle, so every cycle asks the
manager), call ``GET /rest/api/3/myself`` with `JiraClient`, sleep a random pause. ``mode="naive"``
is the negative control: the same cycles with a refresher that reads the row *without* the lock.

How many refreshes are needed (the numbers the report prints):

* GrantManager hands a token out only while more than the margin ``m = min(5 min, TTL/4)`` of its
  life remains, so one refresh serves at most ``L = TTL - m`` seconds of demand (1.5 s at TTL 2 s).
* The race starts with a stale token and demand is practically continuous (``procs`` processes, a
  call every ~``pace`` s each), so covering the wall time ``W`` needs ``ceil(W / L)`` refreshes:
  the *minimum* for this policy. Single-flight also bounds it from above: the next refresh happens
  only once the stored token is stale again, at least ``L`` after the previous one, so at most
  ``floor(W / L) + 1``. (Gaps in demand can make the count a little lower than ``ceil(W / L)``.)
* ``ceil(W / TTL)`` is the floor for any client at all (tokens used to the last millisecond).
* Without single-flight every process would refresh on its own: about ``procs * W / L``, and with a
  0 s leeway the second presentation of a rotated token revokes the grant.

Command line (prints the runs side by side)::

    python -m jira_pipeline_tests.rotation_race --store sqlite --store postgres --procs 8 --cycles 25
    python -m jira_pipeline_tests.rotation_race --store sqlite --mode naive --procs 4 --cycles 12

Postgres runs use a throwaway database on ``JIRA_TEST_PG_ADMIN`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``), or ``--postgres-url`` if given.

The small helpers at the top (simulator, headless consent, secret scanning, environment) are shared
by the ``test_oauth_*`` files.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import requests

from jira_pipeline.atlassian import streams
from jira_pipeline.atlassian.client import JiraClient, StaticTokenProvider
from jira_pipeline.atlassian.oauth import OAuthConfig, ReconsentRequired, refresh_access_token
from jira_pipeline.crypto import TokenCipher, generate_key
from jira_pipeline.grants import GrantManager, utcnow
from jira_pipeline.warehouse.store import Warehouse

if TYPE_CHECKING:
    from jira_pipeline.connect.app import Connector, ConnectResult
    from jira_pipeline_tests.simulator import Simulator

CALLBACK_PATH = "/api/v1/auth/jira/connector/callback"


# ------------------------------------------------------------------------------------------ helpers
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def callback_uri(port: int) -> str:
    return f"http://127.0.0.1:{port}{CALLBACK_PATH}"


def small_simulator(redirect_uri: str, **overrides: Any) -> Simulator:
    """A started simulator with a tiny data set (these tests are about auth, not data)."""
    from jira_pipeline_tests.simulator import SimConfig, Simulator

    cfg = SimConfig(
        seed=7,
        projects=1,
        users=4,
        issues=6,
        worklogs=6,
        huge_description_bytes=2_000,
        redirect_uris=(redirect_uri,),
    )
    return Simulator(cfg, **overrides).start(port=0)


def reset_simulator(sim: Simulator) -> None:
    """Give the next test a clean simulator without restarting it (a stop costs ~0.2 s): default
    knobs, zeroed counters, and every earlier grant revoked so `live_grants()` shows only new ones."""
    sim.set_refresh_leeway(600)
    sim.set_token_ttl(3600)
    sim.consent_mode = "allow"
    sim.refresh_hang_seconds = 0
    sim.refresh_omit_refresh_token = False
    sim.revoke_all_grants()
    sim.reset_stats()
    assert sim.errors == []


def oauth_config(sim: Simulator, redirect_uri: str | None = None, *, client_secret: str | None = None) -> OAuthConfig:
    assert sim.url is not None
    return OAuthConfig(
        client_id=sim.cfg.client_id,
        client_secret=sim.cfg.client_secret if client_secret is None else client_secret,
        redirect_uri=redirect_uri or sim.cfg.redirect_uris[0],
        auth_url=sim.url,
        api_url=sim.url,
    )


def browser_to_callback(authorize_url: str) -> dict[str, str]:
    """What a browser does at /authorize (the simulator consents at once): return the query our
    callback would receive from the 302, without needing a server to receive it."""
    r = requests.get(authorize_url, allow_redirects=False, timeout=30)
    if r.status_code != 302:
        raise RuntimeError(f"/authorize answered {r.status_code}: {r.text[:200]}")
    return dict(parse_qsl(urlsplit(r.headers["Location"]).query))


def issued_secrets(sim: Simulator) -> set[str]:
    """Every string that must never leave the token store in clear: each access and refresh token
    the simulator ever issued, each authorization code, and the client secret."""
    auth = sim.auth
    with auth.lock:
        found = set(auth.access_tokens) | set(auth.refresh_tokens) | set(auth.codes)
    return found | {sim.cfg.client_secret}


def leaked(text: str, secrets: set[str]) -> list[str]:
    """The secrets that occur in `text`, shortened so that a failing assertion does not print them."""
    return [s[:10] + "..." for s in secrets if s and s in text]


def pipeline_env(sim: Simulator, redirect_uri: str, warehouse_url: str, key: str, parquet_dir: str) -> dict[str, str]:
    """The CONTRACT §1 variables pointing the pipeline at `sim` and the test store."""
    assert sim.url is not None
    return {
        "ATLASSIAN_CLIENT_ID": sim.cfg.client_id,
        "ATLASSIAN_CLIENT_SECRET": sim.cfg.client_secret,
        "ATLASSIAN_AUTH_URL": sim.url,
        "ATLASSIAN_API_URL": sim.url,
        "JIRA_REDIRECT_URI": redirect_uri,
        "JIRA_WAREHOUSE_URL": warehouse_url,
        "JIRA_TOKEN_ENCRYPTION_KEY": key,
        "JIRA_PARQUET_DIR": parquet_dir,
    }


def connect_headless(connector: Connector) -> ConnectResult:
    """The real connect flow (state stored, code exchanged, sites listed, grant stored), minus HTTP
    to our own callback: `Connector.finish` gets exactly the query the browser would bring."""
    return connector.finish(browser_to_callback(connector.start()))


# ------------------------------------------------------------------------------------------ naive
def naive_access_token(manager: GrantManager, grant_id: str) -> str:
    """What GrantManager would be WITHOUT the row lock: read, refresh if stale, write back.

    The negative control only. Two processes that read the same stale row both present the same
    refresh token; the second presentation comes after the rotation, which (leeway 0) revokes the grant.
    """
    warehouse, cipher = manager.warehouse, manager.cipher
    row = warehouse.get_grant(grant_id)
    if row is None or row.get("status") != "active":
        raise ReconsentRequired(f"grant {grant_id} is revoked")
    until = manager.fresh_until(row)
    if until is not None and utcnow() < until:
        return cipher.decrypt(row["access_token_enc"])
    try:
        tokens = refresh_access_token(manager.oauth, cipher.decrypt(row["refresh_token_enc"]))
    except ReconsentRequired:
        row["status"], row["status_reason"] = "revoked", "invalid_grant (naive refresher)"
        warehouse.save_grant(row)
        raise
    now = utcnow()
    row["access_token_enc"] = cipher.encrypt(tokens.access_token)
    if tokens.refresh_token:
        row["refresh_token_enc"] = cipher.encrypt(tokens.refresh_token)
    row["access_expires_at"] = tokens.expires_at
    row["refreshed_at"] = row["updated_at"] = now
    row["refresh_count"] = int(row.get("refresh_count") or 0) + 1
    warehouse.save_grant(row)
    return tokens.access_token


# ------------------------------------------------------------------------------------------ worker
@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker process needs to build its own store and GrantManager (JSON on its stdin,
    so the key and the client secret never appear on a command line)."""

    index: int
    warehouse_url: str
    key: str = field(repr=False)
    oauth: dict[str, Any] = field(repr=False)
    grant_id: str = ""
    cloud_id: str = ""
    cycles: int = 25
    pace: float = 0.25
    mode: str = "locked"


def _short_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


def worker_main() -> None:
    """One process of the race (`python -m jira_pipeline_tests.rotation_race --worker`).

    Protocol on stdin/stdout: read the spec (one JSON line), print ``ready`` once the store and the
    manager are built, wait for ``go``, run the cycles, print the summary as one JSON line.
    """
    spec = WorkerSpec(**json.loads(sys.stdin.readline()))
    out: dict[str, Any] = {"index": spec.index, "ok": 0, "failed": 0, "retries_401": 0, "errors": []}
    try:
        warehouse = Warehouse(spec.warehouse_url, create=False)
        oauth = OAuthConfig(**{**spec.oauth, "scopes": tuple(spec.oauth["scopes"])})
        manager = GrantManager(warehouse, oauth, TokenCipher(spec.key))
        warehouse.ping()  # connect before the start line, not after it
        rng = random.Random(spec.index)
        print("ready", flush=True)
        if sys.stdin.readline().strip() != "go":
            raise RuntimeError("no start signal")
        out["start"] = time.time()
        for _ in range(spec.cycles):
            try:
                out["retries_401"] += _cycle(spec, manager)
                out["ok"] += 1
            except Exception as exc:
                out["failed"] += 1
                if len(out["errors"]) < 5:
                    out["errors"].append(_short_error(exc))
            time.sleep(rng.uniform(0, 2 * spec.pace))
        out["end"] = time.time()
        try:  # "ends with a working token": one more token + Jira call after the last pause
            _cycle(spec, manager)
            out["final_ok"] = True
        except Exception as exc:
            out["final_ok"] = False
            out["errors"].append("final: " + _short_error(exc))
        out["refresh_calls"] = manager.refresh_calls
        warehouse.close()
    except Exception:
        out["crash"] = traceback.format_exc()[-2000:]
    print(json.dumps(out), flush=True)


def _cycle(spec: WorkerSpec, manager: GrantManager) -> int:
    """Get a token (locked: through a new GrantTokenProvider; naive: without the lock), call /myself.
    Returns how many 401s the client had to heal."""
    if spec.mode == "naive":
        provider: Any = StaticTokenProvider(naive_access_token(manager, spec.grant_id))
    else:
        provider = manager.provider(spec.grant_id)
    with JiraClient(manager.oauth.api_url, spec.cloud_id, provider, max_retries=1, backoff_base=0.05) as client:
        me = streams.myself(client)
        if not me.get("accountId"):
            raise RuntimeError("/myself answered without accountId")
        return client.stats.refreshes_after_401


def _start_workers(specs: Sequence[WorkerSpec]) -> list[subprocess.Popen[str]]:
    """Start one fresh interpreter per spec and return once all of them are ready to go."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "jira_pipeline_tests.rotation_race", "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in specs
    ]
    try:
        for proc, spec in zip(procs, specs, strict=True):
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(asdict(spec)) + "\n")
            proc.stdin.flush()
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            if line != "ready":
                proc.kill()
                err = proc.communicate(timeout=10)[1]
                raise RuntimeError(f"race worker did not start: {line} {err[-1500:]}")
    except BaseException:
        for proc in procs:
            proc.kill()
        raise
    return procs


# ------------------------------------------------------------------------------------------ parent
@dataclass
class RaceResult:
    store: str
    mode: str
    procs: int
    cycles: int
    ttl: float
    leeway: int
    margin: float
    wall_seconds: float
    token_refreshes: int
    min_refreshes: int
    max_single_flight: int
    floor_any_client: int
    revoked_grants: int
    calls_ok: int
    calls_failed: int
    retries_401: int
    procs_ending_ok: int
    grant_alive: bool
    errors: list[str]
    crashes: list[str]

    @property
    def ratio(self) -> float:
        return self.token_refreshes / self.min_refreshes if self.min_refreshes else float("nan")


def run_race(
    warehouse_url: str,
    *,
    store: str,
    procs: int = 8,
    cycles: int = 25,
    ttl: int = 2,
    leeway: int = 0,
    pace: float = 0.25,
    mode: str = "locked",
) -> RaceResult:
    """Run the race once on `warehouse_url` (its tables are created; the grant is stored there)."""
    from jira_pipeline.connect.app import Connector

    port = free_port()  # nothing listens there: the callback query is handed to the connector directly
    sim = small_simulator(callback_uri(port), access_token_ttl=ttl, refresh_leeway=leeway)
    try:
        assert sim.url is not None
        key = generate_key()
        warehouse = Warehouse(warehouse_url)
        manager = GrantManager(warehouse, oauth_config(sim), TokenCipher(key))
        connected = connect_headless(Connector(manager))
        grant_id, cloud_id = connected.grant_id, connected.sites[0]["id"]
        row = warehouse.get_grant(grant_id)
        assert row is not None
        margin = (row["access_expires_at"] - manager.fresh_until(row)).total_seconds()
        # Start stale: the first demand must refresh, so the minimum below is exact.
        with warehouse.lock_grant(grant_id) as locked:
            assert locked is not None
            locked["access_expires_at"] = utcnow() - timedelta(seconds=1)
        sim.reset_stats()

        oauth = {f.name: getattr(manager.oauth, f.name) for f in fields(OAuthConfig)}
        specs = [WorkerSpec(i, warehouse_url, key, oauth, grant_id, cloud_id, cycles, pace, mode) for i in range(procs)]
        workers = _start_workers(specs)
        for proc in workers:  # the start signal: one short write each, microseconds apart
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        released = time.time()
        outs = []
        for proc in workers:
            stdout, stderr = proc.communicate(timeout=300)
            lines = stdout.strip().splitlines()
            outs.append(json.loads(lines[-1]) if lines else {"crash": stderr[-2000:], "ok": 0, "failed": 0})
            outs[-1].setdefault("errors", [])
            outs[-1].setdefault("retries_401", 0)
        ends = [o["end"] for o in outs if "end" in o]
        wall = (max(ends) if ends else time.time()) - released
        usable = ttl - margin
        alive = any(g.id for g in sim.auth.live_grants())
        stored = warehouse.get_grant(grant_id)
        warehouse.close()
        return RaceResult(
            store=store,
            mode=mode,
            procs=procs,
            cycles=cycles,
            ttl=ttl,
            leeway=leeway,
            margin=round(margin, 3),
            wall_seconds=round(wall, 2),
            token_refreshes=sim.stats.token_refreshes,
            min_refreshes=math.ceil(wall / usable),
            max_single_flight=math.floor(wall / usable) + 1,
            floor_any_client=math.ceil(wall / ttl),
            revoked_grants=sim.stats.revoked_grants,
            calls_ok=sum(o["ok"] for o in outs),
            calls_failed=sum(o["failed"] for o in outs),
            retries_401=sum(o["retries_401"] for o in outs),
            procs_ending_ok=sum(1 for o in outs if o.get("final_ok")),
            grant_alive=alive and stored is not None and stored["status"] == "active",
            errors=[e for o in outs for e in o["errors"]],
            crashes=[o["crash"] for o in outs if "crash" in o],
        )
    finally:
        sim.stop()


ROWS: list[tuple[str, Callable[[RaceResult], object]]] = [
    ("store", lambda r: r.store),
    ("mode", lambda r: r.mode),
    ("processes x cycles", lambda r: f"{r.procs} x {r.cycles}"),
    ("access-token TTL / leeway", lambda r: f"{r.ttl:g} s / {r.leeway} s"),
    ("refresh margin m", lambda r: f"{r.margin:g} s"),
    ("wall time W", lambda r: f"{r.wall_seconds:.2f} s"),
    ("refresh calls (simulator)", lambda r: r.token_refreshes),
    ("minimum ceil(W/(TTL-m))", lambda r: r.min_refreshes),
    ("single-flight max floor(W/(TTL-m))+1", lambda r: r.max_single_flight),
    ("refreshes / minimum", lambda r: f"{r.ratio:.2f}"),
    ("any client >= ceil(W/TTL)", lambda r: r.floor_any_client),
    ("without single-flight ~procs*W/(TTL-m)", lambda r: round(r.procs * r.wall_seconds / (r.ttl - r.margin))),
    ("revoked grants", lambda r: r.revoked_grants),
    ("Jira calls ok / failed", lambda r: f"{r.calls_ok} / {r.calls_failed}"),
    ("401s healed by a refresh", lambda r: r.retries_401),
    ("processes ending with a working token", lambda r: f"{r.procs_ending_ok} / {r.procs}"),
    ("grant alive afterwards", lambda r: "yes" if r.grant_alive else "NO"),
]


def format_results(results: Sequence[RaceResult]) -> str:
    """The runs side by side, one column each."""
    width = max(len(name) for name, _ in ROWS) + 2
    cols = [[str(get(r)) for _, get in ROWS] for r in results]
    colw = [max(12, *(len(v) for v in col)) + 2 for col in cols]
    lines = []
    for i, (name, _) in enumerate(ROWS):
        lines.append(name.ljust(width) + "".join(col[i].rjust(w) for col, w in zip(cols, colw, strict=True)))
    for r in results:
        for e in r.errors[:3] + r.crashes[:1]:
            lines.append(f"  [{r.store}/{r.mode}] {e.strip().splitlines()[-1]}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", action="append", choices=["sqlite", "postgres"], help="repeatable")
    parser.add_argument("--mode", action="append", choices=["locked", "naive"], help="repeatable (default locked)")
    parser.add_argument("--procs", type=int, default=8)
    parser.add_argument("--cycles", type=int, default=25)
    parser.add_argument("--ttl", type=int, default=2, help="access-token lifetime in the simulator (s)")
    parser.add_argument("--leeway", type=int, default=0, help="rotated refresh-token leeway in the simulator (s)")
    parser.add_argument("--pace", type=float, default=0.25, help="mean pause between a process's cycles (s)")
    parser.add_argument("--postgres-url", help="use this database instead of a throwaway one")
    parser.add_argument("--json", action="store_true", help="also print each result as JSON")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main()
        return 0

    results: list[RaceResult] = []
    for store in args.store or ["sqlite"]:
        for mode in args.mode or ["locked"]:
            print(f"running {store}/{mode}: {args.procs} processes x {args.cycles} cycles...", file=sys.stderr)
            with tempfile.TemporaryDirectory() as tmp:
                if store == "sqlite":
                    url, drop = f"sqlite:///{Path(tmp) / 'warehouse.db'}", None
                elif args.postgres_url:
                    url, drop = args.postgres_url, None
                else:
                    from jira_pipeline_tests.conftest import create_database, drop_database

                    url = create_database()
                    drop = drop_database
                try:
                    results.append(
                        run_race(
                            url,
                            store=store,
                            procs=args.procs,
                            cycles=args.cycles,
                            ttl=args.ttl,
                            leeway=args.leeway,
                            pace=args.pace,
                            mode=mode,
                        )
                    )
                finally:
                    if drop is not None:
                        drop(url)
    print(format_results(results))
    if args.json:
        for r in results:
            print(json.dumps(asdict(r)))
    locked_ok = all(
        r.revoked_grants == 0 and r.procs_ending_ok == r.procs and r.calls_failed == 0
        for r in results
        if r.mode == "locked"
    )
    return 0 if locked_ok else 1


if __name__ == "__main__":
    sys.exit(main())
