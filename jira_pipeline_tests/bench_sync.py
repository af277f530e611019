"""Benchmark of `jira-pipeline sync`: full, no-change incremental and small-change incremental.

``python -m jira_pipeline_tests.bench_sync [--issues 20000] [--worklogs 60000] [--latency-ms 50]
[--store sqlite|postgres]`` (``make bench`` runs the defaults on SQLite). Results: docs/BENCHMARKS.md.

A script, not a timed test: wall times on a shared 2-core machine are too noisy to assert on, but a
command anyone can rerun keeps the numbers honest. What it does, and why each choice:

* The simulator runs as a **separate process** (the standalone CLI with `/_sim/*` control endpoints), so
  its CPU and memory are not charged to the sync; its CPU seconds per phase are reported separately,
  because on 2 cores it still competes with the sync for the CPU.
* By default the simulator's body caches are **warmed** first (every issue and worklog fetched once
  with a throw-away token): the simulator renders a body once per version, real Jira does its work on
  its own servers, so a cold simulator would charge its JSON rendering to whichever run comes first.
* Every measured step is the real command line in its own process, in a fresh temp dir (SQLite file or a
  fresh PostgreSQL database, Parquet dir, `DAGSTER_HOME` with a copy of dagster.local.yaml):
  `jira-pipeline connect --no-browser` (this script plays the browser), `jira-pipeline sync --full`,
  `jira-pipeline sync` with nothing changed, then `jira-pipeline sync` after a small mutation.
  Wall time, CPU time and peak RSS come from `os.wait4` in a minimal launcher process (see `_LAUNCHER`);
  a /proc sampler adds the peak RSS of the whole process tree and, on PostgreSQL, the CPU time of the
  server backends serving our databases. API requests come from the simulator's own counters, diffed
  around each phase. The configured latency is verified with timed round trips before measuring.
* **Dagster's share**: the run's event log gives, per step, the op body (STEP_START to its first
  ASSET_MATERIALIZATION) and the per-partition materialization writes after it; a `direct` column runs
  `extract.SiteSync` in a plain process (no Dagster) on the same data into a second fresh store
  (``--direct``, also usable on its own; ``--profile`` adds a cProfiled run, all threads merged).
* Experiments: ``--dagster-storage postgres`` and ``--sync-env KEY=VALUE`` (e.g. Dagster's event batching
  flags) change only Dagster's side; ``--json`` keeps every number.

Nothing is written into the repository; the temp dir is deleted unless `--keep`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TABLES = ("jira_projects", "jira_users", "jira_issues", "jira_worklogs")
PG_ADMIN_DEFAULT = "postgresql://postgres@127.0.0.1:5432/postgres"
RESULT_MARK = "BENCH_DIRECT_RESULT "
ASSET_STEPS = ("jira__projects", "jira__users", "jira__issues", "jira__worklogs")
#: the simulator's own default redirect URI, registered too so the warm-up can log in without our callback
SIM_DEFAULT_REDIRECT = "http://localhost:8000/api/v1/auth/jira/connector/callback"


# ---------------------------------------------------------------------------------------------- helpers
def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def proc_cpu_seconds(pid: int) -> float:
    """utime+stime of one live process from /proc (the simulator's share of the 2 cores)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tree_rss_kb(root: int, *, children_only: bool = False) -> int:
    """Sum of VmRSS over `root` (unless `children_only`) and its descendants; 0 once they are gone."""
    total, todo, seen = 0, [root], set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            if pid != root or not children_only:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except (OSError, ValueError):
            continue
    return total


@dataclass
class ProcResult:
    argv: list[str]
    exit_code: int
    wall_s: float
    user_s: float
    sys_s: float
    maxrss_mb: float  # ru_maxrss of the process (and any waited-for descendants), exact
    tree_peak_mb: float  # sampled every 0.1 s: sum over the process tree
    db_cpu_s: float | None  # PostgreSQL backends of the watched databases, sampled
    started_at: float  # time.time() just before spawning
    ended_at: float
    output: str

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s


#: Spawns the measured command and reports its rusage. Why a launcher: ru_maxrss is a high-water mark that
#: survives exec, and a child forked (or vforked) straight from this script starts with this script's RSS
#: (Dagster and pandas imported: ~250 MB), which would hide a small sync's real peak. The launcher is a
#: bare `python -I -S` (~10 MB); its child's high-water mark starts there.
_LAUNCHER = """
import json, os, sys, time
t0 = time.monotonic()
pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ)
_, status, ru = os.wait4(pid, 0)
wall = time.monotonic() - t0
with open(sys.argv[1], "w") as f:
    json.dump({"wall": wall, "user": ru.ru_utime, "sys": ru.ru_stime, "maxrss_kb": ru.ru_maxrss,
               "code": os.waitstatus_to_exitcode(status)}, f)
"""


def _pg_backend_cpu(dbs: tuple[str, ...], seen: dict[int, float]) -> None:
    """CPU seconds so far of each PostgreSQL backend serving one of `dbs` (its process title is
    `postgres: [cluster:] user db host(port) state`): the server's share of a sync, which `wait4` cannot
    see. Needs the server on this machine (127.0.0.1) and a readable /proc."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        words = title.split()
        if words[:1] == ["postgres:"] and any(w in dbs for w in words[1:4]):
            cpu = proc_cpu_seconds(int(entry.name))
            if cpu:
                seen[int(entry.name)] = cpu


def measure(
    argv: list[str], env: dict[str, str], log: Path, timeout: float, watch_dbs: tuple[str, ...] = ()
) -> ProcResult:
    """Run one command to completion and measure it: wall time, CPU time and exact peak RSS from
    `os.wait4` in a minimal launcher, plus a /proc sampler that adds up the command's whole process tree
    every 0.1 s (in case it spawns helpers; sampling can miss short peaks) and, for `watch_dbs`, the CPU
    time of the PostgreSQL backends serving those databases (sampled every 0.5 s, so a backend's last
    half second before it disconnects can be missed)."""
    usage_file = log.with_suffix(".rusage.json")
    launcher = [sys.executable, "-I", "-S", "-c", _LAUNCHER, str(usage_file), *argv]
    with open(log, "w") as out:
        started = time.time()
        proc = subprocess.Popen(
            launcher, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        peak = [0]
        done = threading.Event()
        backends: dict[int, float] = {}
        before: dict[int, float] = {}
        if watch_dbs:
            _pg_backend_cpu(watch_dbs, before)  # pooled backends of earlier work are not this phase's

        def sample() -> None:
            own = _tree_rss_kb(proc.pid, children_only=True)
            ticks = 0
            while not done.is_set():
                peak[0] = max(peak[0], own)
                if watch_dbs and ticks % 5 == 0:
                    _pg_backend_cpu(watch_dbs, backends)
                ticks += 1
                done.wait(0.1)
                own = _tree_rss_kb(proc.pid, children_only=True)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # our own session: the launcher and the sync under it
            proc.wait()
        finally:
            done.set()
            sampler.join()
    try:
        usage = json.loads(usage_file.read_text())
    except (OSError, ValueError):
        usage = {"wall": time.time() - started, "user": 0.0, "sys": 0.0, "maxrss_kb": 0, "code": proc.returncode}
    return ProcResult(
        argv=argv,
        exit_code=int(usage["code"]) if proc.returncode == 0 else proc.returncode,
        wall_s=float(usage["wall"]),
        user_s=float(usage["user"]),
        sys_s=float(usage["sys"]),
        maxrss_mb=usage["maxrss_kb"] / 1024,  # KiB on Linux
        tree_peak_mb=peak[0] / 1024,
        db_cpu_s=sum(cpu - before.get(pid, 0.0) for pid, cpu in backends.items()) if watch_dbs else None,
        started_at=started,
        ended_at=time.time(),
        output=log.read_text(errors="replace"),
    )


def jira_pipeline_argv(*args: str) -> list[str]:
    script = BIN / "jira-pipeline"
    return [str(script), *args] if script.exists() else [sys.executable, "-m", "jira_pipeline.cli", *args]


# ---------------------------------------------------------------------------------------------- simulator
class SimProcess:
    """The standalone simulator in its own process, driven through `/_sim/*`."""

    def __init__(self, args: argparse.Namespace, redirect_uri: str, log: Path) -> None:
        argv = [
            sys.executable, "-m", "jira_pipeline_tests.simulator", "--port", "0", "--seed", str(args.seed),
            "--issues", str(args.issues), "--worklogs", str(args.worklogs), "--users", str(args.users),
            "--projects", str(args.projects), "--latency-ms", str(args.latency_ms),
            "--redirect-uri", redirect_uri, "--redirect-uri", SIM_DEFAULT_REDIRECT,
        ]  # fmt: skip
        self.log_file = open(log, "w")  # closed in stop()
        self.proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=self.log_file, text=True)
        assert self.proc.stdout is not None
        text = ""
        while "Ctrl-C" not in text:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"the simulator exited early:\n{text}\n{log.read_text()}")
            text += line
        url = re.search(r"listening on (\S+)", text)
        gen = re.search(r"generated in ([\d.]+)s", text)
        cloud = re.search(r"cloud_id=(\S+)", text)
        if not (url and gen and cloud):
            raise RuntimeError(f"unexpected simulator banner:\n{text}")
        self.url, self.cloud_id, self.generation_s = url.group(1), cloud.group(1), float(gen.group(1))
        self.latency_ms: int = args.latency_ms
        # keep draining stdout so the simulator never blocks on a full pipe
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def _call(self, method: str, name: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        r = requests.request(method, f"{self.url}/_sim/{name}", json=payload, timeout=120)
        r.raise_for_status()
        return r.json()

    def state(self) -> dict[str, Any]:
        return self._call("GET", "state")

    def stats(self) -> dict[str, Any]:
        return self.state()["stats"]

    def now(self) -> datetime:
        return datetime.fromisoformat(self.state()["now"])

    def mutate(self, **changes: int) -> dict[str, Any]:
        return self._call("POST", "mutate", changes)

    def advance(self, seconds: float) -> None:
        self._call("POST", "advance", {"seconds": seconds})

    def set_latency(self, ms: int) -> None:
        self._call("POST", "faults", {"latency_ms": ms})

    def cpu_s(self) -> float:
        return proc_cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self.log_file.close()


def warm_simulator(sim: SimProcess, threads: int = 8) -> tuple[float, int]:
    """Fetch every issue (`*all`, as the pipeline asks) and every worklog once with a throw-away grant, so
    the simulator's per-version body caches are full before anything is measured. Latency is switched
    off meanwhile and set back to the configured value (`/_sim/state` does not report it, so it is not
    read back from there); the requests made here are excluded from every phase by diffing the counters."""
    from jira_pipeline_tests.simulator.bench import login, walk_and_fetch

    t0 = time.perf_counter()
    sim.set_latency(0)
    try:
        token = login(sim.url)
        base = f"{sim.url}/ex/jira/{sim.cloud_id}/rest/api/3"
        _, _, _, fetched = walk_and_fetch(base, token, threads, ["*all"])
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        ids: list[int] = []
        url: str | None = f"{base}/worklog/updated?since=0"
        while url:
            page = session.get(url, timeout=60).json()
            ids.extend(int(v["worklogId"]) for v in page.get("values") or [])
            nxt = page.get("nextPage")
            url = None if page.get("lastPage") or not nxt else f"{base}/worklog/updated?{nxt.split('?', 1)[1]}"

        def fetch(chunk: list[int]) -> int:
            return len(session.post(f"{base}/worklog/list", json={"ids": chunk}, timeout=120).json())

        with ThreadPoolExecutor(threads) as pool:
            fetched += sum(pool.map(fetch, [ids[i : i + 1000] for i in range(0, len(ids), 1000)]))
    finally:
        sim.set_latency(sim.latency_ms)
    return time.perf_counter() - t0, fetched


def measured_latency_ms(sim: SimProcess) -> float:
    """The fastest of five `GET myself` round trips: proves the configured latency is in force before
    anything is measured (a benchmark that silently ran at 0 ms would report nonsense)."""
    from jira_pipeline_tests.simulator.bench import login

    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {login(sim.url)}"
    url = f"{sim.url}/ex/jira/{sim.cloud_id}/rest/api/3/myself"
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        session.get(url, timeout=30).raise_for_status()
        best = min(best, time.perf_counter() - t0)
    ms = best * 1000
    if not sim.latency_ms * 0.9 <= ms <= sim.latency_ms + 250:
        raise RuntimeError(f"the simulator answers in {ms:.0f} ms, configured {sim.latency_ms} ms")
    return ms


def diff_stats(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Counter deltas; our own `/_sim/*` calls (the `before` snapshot is counted after it is taken) are
    left out."""
    routes = {
        k: after["requests"].get(k, 0) - before["requests"].get(k, 0)
        for k in sorted(set(after["requests"]) | set(before["requests"]))
        if not k.split(" ", 1)[-1].startswith("/_sim/")
    }
    return {
        "total": sum(routes.values()),
        "routes": {k: v for k, v in routes.items() if v},
        "mb_sent": (after["bytes_sent"] - before["bytes_sent"]) / 1e6,
        "token_refreshes": after["token_refreshes"] - before["token_refreshes"],
        "faults": after["faults_injected"] - before["faults_injected"],
    }


# ---------------------------------------------------------------------------------------------- stores
@dataclass
class Store:
    url: str
    pg_admin: str | None = None  # set for a PostgreSQL database this script created (and drops)

    @property
    def db_name(self) -> str:
        return self.url.rsplit("/", 1)[1]

    def drop(self) -> None:
        if self.pg_admin is None:
            return
        import psycopg

        with psycopg.connect(self.pg_admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')


def new_store(kind: str, tmp: Path, label: str, pg_admin: str) -> Store:
    if kind == "sqlite":
        return Store(f"sqlite:///{tmp / f'{label}.db'}")
    import psycopg

    name = f"jira_bench_{label}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = pg_admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return Store(f"{base}/{name}", pg_admin)


def table_rows(url: str) -> dict[str, tuple[int, int]]:
    """(live, soft-deleted) rows per table."""
    from jira_pipeline.warehouse.store import Warehouse

    wh = Warehouse(url)
    try:
        out = {}
        for table in TABLES:
            live = wh.count(table, include_deleted=False)
            out[table] = (live, wh.count(table, include_deleted=True) - live)
        return out
    finally:
        wh.close()


def connect(env: dict[str, str], tmp: Path, label: str) -> None:
    """`jira-pipeline connect --no-browser` as users run it; we are the browser: GET the printed URL and
    follow /authorize's redirect to the callback."""
    log = tmp / f"connect-{label}.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            jira_pipeline_argv("connect", "--no-browser", "--timeout", "120"),
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=err, text=True,
        )  # fmt: skip
        assert proc.stdout is not None
        url = None
        for line in proc.stdout:
            if line.startswith("http"):
                url = line.strip()
                break
        if url is None:
            proc.wait(timeout=30)
            raise RuntimeError(f"connect printed no URL:\n{log.read_text()}")
        page = requests.get(url, timeout=60)
        rest = proc.stdout.read()
        code = proc.wait(timeout=120)
    if page.status_code != 200 or code != 0:
        raise RuntimeError(f"connect failed ({page.status_code}, exit {code}): {page.text[:300]}\n{rest}")


# ---------------------------------------------------------------------------------------------- Dagster timeline
def dagster_timeline(home: Path, run_id: str, proc: ProcResult) -> dict[str, Any]:
    """Where a run's wall time went, from its event log.

    An asset op body runs from STEP_START to the step's first ASSET_MATERIALIZATION (the body returns
    one `MaterializeResult`; Dagster then records one materialization event per partition of a range
    run). Asset-check steps are the pipeline's own code but not extraction, so they get a row of their
    own. The rest is Dagster: process start and definitions load, run creation (incl. one
    ASSET_MATERIALIZATION_PLANNED event per asset and partition), the per-partition materialization
    events, step bookkeeping, and what follows RUN_SUCCESS."""
    from dagster import DagsterEventType, DagsterInstance

    saved = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(home)  # dagster.local.yaml reads its base_dir from the environment
    try:
        with DagsterInstance.from_config(str(home)) as instance:
            entries = instance.all_logs(run_id)
    finally:
        if saved is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = saved
    first_ts = min(e.timestamp for e in entries)
    run_start = run_end = None
    kinds: dict[str, int] = {}
    steps: dict[str, dict[str, Any]] = {}
    for e in entries:
        kind = e.dagster_event.event_type if e.dagster_event else None
        name = kind.name if kind else "LOG_MESSAGE"
        kinds[name] = kinds.get(name, 0) + 1
        if kind == DagsterEventType.RUN_START:
            run_start = e.timestamp
        elif kind in (DagsterEventType.RUN_SUCCESS, DagsterEventType.RUN_FAILURE):
            run_end = e.timestamp
        if not e.step_key or kind in (
            DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
            DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED,
        ):
            continue
        step = steps.setdefault(e.step_key, {"materializations": 0})
        if kind == DagsterEventType.STEP_START:
            step["start"] = e.timestamp
        elif kind in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE):
            step["end"] = e.timestamp
        elif kind == DagsterEventType.ASSET_MATERIALIZATION:
            step["materializations"] += 1
            step.setdefault("first_mat", e.timestamp)
    bodies = mats = checks = 0.0
    per_step: dict[str, dict[str, Any]] = {}
    for key, step in steps.items():
        if "start" not in step or "end" not in step:
            continue
        if key in ASSET_STEPS:
            body_end = step.get("first_mat", step["end"])
            per_step[key] = {
                "body_s": body_end - step["start"],
                "materialize_s": step["end"] - body_end,
                "materializations": step["materializations"],
            }
            bodies += body_end - step["start"]
            mats += step["end"] - body_end
        else:
            per_step[key] = {"check_s": step["end"] - step["start"]}
            checks += step["end"] - step["start"]
    run_start = run_start or first_ts
    run_end = run_end or proc.ended_at
    return {
        "events": len(entries),
        "event_kinds": kinds,
        "startup_s": first_ts - proc.started_at,  # interpreter, imports, definitions, instance
        "run_creation_s": run_start - first_ts,  # run record + planned events
        "op_bodies_s": bodies,
        "checks_s": checks,
        "materialize_s": mats,
        "steps_other_s": (run_end - run_start) - bodies - mats - checks,  # resources, bookkeeping, between steps
        "after_run_s": proc.ended_at - run_end,  # summary, teardown, exit
        "dagster_s": proc.wall_s - bodies - checks,
        "per_step": per_step,
    }


# ---------------------------------------------------------------------------------------------- phases
@dataclass
class Phase:
    name: str
    proc: ProcResult
    api: dict[str, Any]
    rows: dict[str, tuple[int, int]]
    summary: dict[str, dict[str, int]]
    sim_cpu_s: float
    load_before: str
    load_after: str
    timeline: dict[str, Any] | None = None
    direct: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


_SUMMARY = re.compile(r"^(jira_\w+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", re.M)


def parse_summary(output: str) -> dict[str, dict[str, int]]:
    return {
        m.group(1): dict(
            zip(("rows", "inserted", "updated", "deleted", "requests"), map(int, m.groups()[1:]), strict=True)
        )
        for m in _SUMMARY.finditer(output)
    }


def run_phase(
    name: str,
    argv: list[str],
    env: dict[str, str],
    sim: SimProcess,
    store_url: str,
    tmp: Path,
    timeout: float,
    watch_dbs: tuple[str, ...] = (),
) -> Phase:
    load_before = loadavg()
    before = sim.stats()
    cpu0 = sim.cpu_s()
    log = tmp / (re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") + ".log")
    proc = measure(argv, env, log, timeout, watch_dbs)
    sim_cpu = sim.cpu_s() - cpu0
    api = diff_stats(before, sim.stats())
    if proc.exit_code != 0:
        raise RuntimeError(f"{name}: {' '.join(argv)} exited {proc.exit_code}\n{proc.output[-5000:]}")
    phase = Phase(name, proc, api, table_rows(store_url), parse_summary(proc.output), sim_cpu, load_before, loadavg())
    m = re.search(r"Dagster run (\S+): SUCCESS", proc.output)
    if m:
        phase.timeline = dagster_timeline(Path(env["DAGSTER_HOME"]), m.group(1), proc)
    d = re.search("^" + RESULT_MARK + "(.*)$", proc.output, re.M)
    if d:
        phase.direct = json.loads(d.group(1))
    print(
        f"  {name}: {proc.wall_s:.1f} s wall, {proc.cpu_s:.1f} s CPU, peak RSS {proc.maxrss_mb:.0f} MB, "
        f"{api['total']} API requests (load {load_before} -> {phase.load_after})",
        flush=True,
    )
    return phase


# ---------------------------------------------------------------------------------------------- direct worker
def direct_main(argv: list[str]) -> int:
    """`extract.SiteSync` without Dagster, wired like `JiraResource.site_syncs`, on the window a
    `sync --full` run gets (JIRA_START_DATE ... tomorrow) or, with --incremental, today's partition."""
    p = argparse.ArgumentParser(prog="bench_sync --direct")
    p.add_argument("--incremental", action="store_true")
    p.add_argument("--profile", help="write merged cProfile stats of every thread to this file")
    p.add_argument("--max-workers", type=int, default=8, help="concurrent requests (JiraResource.max_concurrency)")
    a = p.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    t_import = time.perf_counter()
    from jira_pipeline.atlassian.client import JiraClient
    from jira_pipeline.cli import build_grants
    from jira_pipeline.extract import SiteSync
    from jira_pipeline.settings import Settings
    from jira_pipeline.warehouse.parquet import ParquetSink

    import_s = time.perf_counter() - t_import
    profiles: list[Any] = []
    if a.profile:
        import cProfile

        original_run = threading.Thread.run

        def profiled_run(self: threading.Thread) -> None:
            prof = cProfile.Profile()
            prof.enable()
            try:
                original_run(self)
            finally:
                prof.disable()
                profiles.append(prof)

        threading.Thread.run = profiled_run  # type: ignore[method-assign]
        main_prof = cProfile.Profile()
        profiles.append(main_prof)
        main_prof.enable()
    settings = Settings.from_env()
    grants = build_grants(settings)
    sink = ParquetSink(settings.parquet_dir)
    log = logging.getLogger("jira_pipeline.bench")
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    end = today + timedelta(days=1)
    start = today if a.incremental else datetime(*settings.start_date.timetuple()[:3], tzinfo=UTC)
    stages: dict[str, float] = {}
    requests_made = 0
    counts: dict[str, dict[str, int]] = {}
    t_all = time.perf_counter()
    for site in grants.sites(settings.cloud_ids):
        client = JiraClient(
            grants.oauth.api_url,
            site.cloud_id,
            grants.provider(site.grant_id),
            max_concurrency=a.max_workers,
            logger=log,
        )
        sync = SiteSync(
            cloud_id=site.cloud_id, site_url=site.url, client=client, warehouse=grants.warehouse, sink=sink,
            log=log, max_workers=client.max_concurrency, batch_rows=settings.batch_rows,
        )  # fmt: skip
        for stage, work in (
            ("projects", sync.sync_projects),
            ("users", sync.sync_users),
            ("issues", lambda s=sync: s.sync_issues(start, end)),
            ("worklogs", lambda s=sync: s.sync_worklogs(start, end)),
        ):
            t0 = time.perf_counter()
            stats = work()
            stages[stage] = stages.get(stage, 0.0) + time.perf_counter() - t0
            counts[stats.table] = {
                "fetched": stats.fetched, "inserted": stats.inserted, "updated": stats.updated,
                "deleted": stats.deleted, "parquet_files": len(stats.files),
            }  # fmt: skip
        requests_made += client.stats.requests
        client.close()
    total = time.perf_counter() - t_all
    if a.profile:
        import pstats

        main_prof.disable()
        threading.Thread.run = original_run  # type: ignore[method-assign]
        merged = pstats.Stats(profiles[0])
        for prof in profiles[1:]:
            merged.add(prof)
        merged.dump_stats(a.profile)
    result = {"import_s": import_s, "sync_s": total, "stages": stages, "client_requests": requests_made, **counts}
    print(RESULT_MARK + json.dumps(result), flush=True)
    return 0


# ---------------------------------------------------------------------------------------------- report
def fmt_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table (first column left-aligned, numbers right-aligned): pastes into BENCHMARKS.md."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        padded = (
            str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )
        return "| " + " | ".join(padded) + " |"

    sep = "|" + "|".join("-" * (w + 2) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths)) + "|"
    return "\n".join([line(header), sep, *(line(r) for r in rows)])


def report(phases: list[Phase], meta: dict[str, Any]) -> str:
    """Markdown tables side by side: measurements, requests per route, and where the time went."""
    names = [p.name for p in phases]
    out: list[str] = []
    rows: list[list[str]] = [
        ["wall time (s)", *(f"{p.proc.wall_s:.1f}" for p in phases)],
        ["CPU user+sys (s)", *(f"{p.proc.cpu_s:.1f}" for p in phases)],
        ["peak RSS (MB, wait4)", *(f"{p.proc.maxrss_mb:.0f}" for p in phases)],
        ["peak RSS of tree (MB, sampled)", *(f"{p.proc.tree_peak_mb:.0f}" for p in phases)],
        ["API requests", *(str(p.api["total"]) for p in phases)],
        ["MB received", *(f"{p.api['mb_sent']:.1f}" for p in phases)],
        ["token refreshes", *(str(p.api["token_refreshes"]) for p in phases)],
        ["simulator CPU (s)", *(f"{p.sim_cpu_s:.1f}" for p in phases)],
        *(
            [["PostgreSQL backends CPU (s)", *(f"{p.proc.db_cpu_s or 0:.1f}" for p in phases)]]
            if any(p.proc.db_cpu_s is not None for p in phases)
            else []
        ),
        ["load avg before", *(p.load_before for p in phases)],
    ]
    for table in TABLES:
        rows.append([f"{table} live / deleted", *(f"{p.rows[table][0]} / {p.rows[table][1]}" for p in phases)])
    for table in TABLES:
        cells = []
        for p in phases:
            s = p.summary.get(table) or (p.direct or {}).get(table)
            cells.append(f"+{s['inserted']} ~{s['updated']} -{s['deleted']}" if s else "")
        rows.append([f"{table} inserted/updated/deleted", *cells])
    out.append(fmt_table(["", *names], rows))

    routes = sorted({r for p in phases for r in p.api["routes"]})
    out.append("")
    out.append("API requests by route:")
    out.append(fmt_table(["route", *names], [[r, *(str(p.api["routes"].get(r, 0)) for p in phases)] for r in routes]))

    timed = [p for p in phases if p.timeline or p.direct]
    if timed:
        out.append("")
        out.append("Where the wall time goes (s):")
        trows: list[list[str]] = []
        keys = [
            ("asset op bodies (extraction + writes)", "op_bodies_s"),
            ("asset checks", "checks_s"),
            ("Dagster: process start, imports, definitions", "startup_s"),
            ("Dagster: run creation (planned events)", "run_creation_s"),
            ("Dagster: per-partition materialization events", "materialize_s"),
            ("Dagster: other step/run bookkeeping", "steps_other_s"),
            ("Dagster: after the run (summary, exit)", "after_run_s"),
            ("Dagster total (wall - op bodies - checks)", "dagster_s"),
        ]
        for label, key in keys:
            trows.append([label, *(f"{p.timeline[key]:.1f}" if p.timeline else "" for p in timed)])
        for label, kind in (
            ("event-log entries", None),
            ("  ASSET_MATERIALIZATION_PLANNED", "ASSET_MATERIALIZATION_PLANNED"),
            ("  ASSET_MATERIALIZATION", "ASSET_MATERIALIZATION"),
        ):
            trows.append(
                [
                    label,
                    *(
                        (str(p.timeline["events"] if kind is None else p.timeline["event_kinds"].get(kind, 0)))
                        if p.timeline
                        else ""
                        for p in timed
                    ),
                ]
            )
        trows.append(["direct: SiteSync in-process", *(f"{p.direct['sync_s']:.1f}" if p.direct else "" for p in timed)])
        for stage in ("projects", "users", "issues", "worklogs"):
            cells = []
            for p in timed:
                if p.direct:
                    cells.append(f"{p.direct['stages'].get(stage, 0):.1f}")
                elif p.timeline:
                    step = p.timeline["per_step"].get(f"jira__{stage}")
                    cells.append(f"{step['body_s']:.1f}" if step else "")
                else:
                    cells.append("")
            trows.append([f"  {stage} (op body / direct stage)", *cells])
        out.append(fmt_table(["", *(p.name for p in timed)], trows))
    out.append("")
    out.append(
        "Machine: {cpus} CPUs, {mem} | simulator: {issues} issues, {worklogs} worklogs, {users} users, "
        "{projects} projects, {latency} ms latency (measured {latency_seen:.0f} ms), generated in {gen:.1f} s, "
        "warm-up {warm} | store: {store}, Dagster storage: {dagster_storage} | extra sync env: {sync_env} | "
        "JIRA_START_DATE {start} ({partitions} daily partitions) | Python {py} | code {code}".format(**meta)
    )
    return "\n".join(out)


def code_version() -> str:
    """HEAD and whether the tree differs from it (read-only git): the numbers belong to that code."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}{' + uncommitted changes' if dirty else ''}"


def machine_memory() -> str:
    try:
        kb = int(Path("/proc/meminfo").read_text().split("\n", 1)[0].split()[1])
        return f"{kb / 1024 / 1024:.0f} GB RAM"
    except (OSError, ValueError, IndexError):
        return "RAM n/a"


# ---------------------------------------------------------------------------------------------- main
def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def postgres_dagster_yaml(local_yaml: str, url: str) -> str:
    """dagster.local.yaml with its `storage:` block pointed at PostgreSQL (psycopg2, as production's
    dagster.yaml insists: dagster-postgres' event watcher fails on psycopg 3)."""
    dsn = url.replace("postgresql+psycopg://", "postgresql+psycopg2://", 1)
    block = re.compile(r"^storage:\n(?:[ \t]+\S.*\n)+", re.M)
    if not block.search(local_yaml):
        raise RuntimeError("dagster.local.yaml has no `storage:` block to replace")
    return block.sub(f'storage:\n  postgres:\n    postgres_url: "{dsn}"\n', local_yaml, count=1)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m jira_pipeline_tests.bench_sync",
        description="Full / no-change / small-change sync against the simulator: wall time, API requests, peak RSS.",
    )
    p.add_argument("--issues", type=int, default=20000)
    p.add_argument("--worklogs", type=int, default=60000)
    p.add_argument("--latency-ms", type=int, default=50)
    p.add_argument("--users", type=int, default=40)
    p.add_argument("--projects", type=int, default=4)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--pg-admin", default=os.environ.get("JIRA_TEST_PG_ADMIN", PG_ADMIN_DEFAULT),
                   help="admin URL used to create/drop the throw-away database (default %(default)s)")  # fmt: skip
    p.add_argument(
        "--dagster-storage",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="Dagster's own run/event storage: dagster.local.yaml's SQLite (default) or a fresh PostgreSQL "
        "database, as production's dagster.yaml",
    )
    p.add_argument(
        "--sync-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        type=_key_value,
        help="extra environment of every sync, e.g. DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS=1 (repeatable)",
    )
    p.add_argument("--update-issues", type=int, default=200, help="small change: issues updated")
    p.add_argument("--add-worklogs", type=int, default=500, help="small change: worklogs added")
    p.add_argument("--advance", type=float, default=120, help="small change: simulator seconds to advance")
    p.add_argument("--no-direct", action="store_true", help="skip the SiteSync-without-Dagster column")
    p.add_argument("--no-warmup", action="store_true", help="measure against a cold simulator")
    p.add_argument(
        "--profile", action="store_true", help="then a cProfiled no-Dagster full sync (all threads) on a fresh store"
    )
    p.add_argument("--timeout", type=float, default=3600, help="seconds per sync before it is killed")
    p.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    p.add_argument(
        "--keep",
        action="store_true",
        help="keep the temp dir and databases (logs, stores, Parquet, DAGSTER_HOME, pstats)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--direct":
        return direct_main(argv[1:])
    args = parse_args(argv)
    from jira_pipeline.crypto import generate_key
    from jira_pipeline_tests.simulator.config import SimConfig

    tmp = Path(tempfile.mkdtemp(prefix="jira-bench-"))
    stores: list[Store] = []
    sim: SimProcess | None = None
    print(f"Benchmark dir: {tmp}", flush=True)
    try:
        redirect = f"http://127.0.0.1:{free_port()}/api/v1/auth/jira/connector/callback"
        print(f"Starting the simulator ({args.issues} issues, {args.worklogs} worklogs, {args.latency_ms} ms)...",
              flush=True)  # fmt: skip
        sim = SimProcess(args, redirect, tmp / "simulator.log")
        warm = "off"
        if not args.no_warmup:
            secs, n = warm_simulator(sim)
            warm = f"{n} bodies in {secs:.0f} s"
            print(f"  simulator warmed: {warm}", flush=True)
        latency_seen = measured_latency_ms(sim)
        print(f"  latency check: GET myself answers in {latency_seen:.0f} ms", flush=True)
        # Daily partitions from just before the simulator's history (SimConfig.history_days before its now).
        history_start = sim.now() - timedelta(days=SimConfig().history_days)
        start_date = (history_start - timedelta(days=1)).date().isoformat()
        partitions = (datetime.now(UTC).date() - date.fromisoformat(start_date)).days + 1  # through today

        @dataclass
        class Target:
            """One fresh table store + Parquet dir + DAGSTER_HOME, with its own connected grant."""

            env: dict[str, str]
            store: Store
            watch_dbs: tuple[str, ...]

        def target(label: str) -> Target:
            store = new_store(args.store, tmp, label, args.pg_admin)
            stores.append(store)
            watch = (store.db_name,) if store.pg_admin else ()
            home = tmp / f"dagster_home_{label}"
            home.mkdir()
            config = (REPO / "dagster.local.yaml").read_text()
            if args.dagster_storage == "postgres":
                dagster_db = new_store("postgres", tmp, f"dagster_{label}", args.pg_admin)
                stores.append(dagster_db)
                watch += (dagster_db.db_name,)
                config = postgres_dagster_yaml(config, dagster_db.url)
            (home / "dagster.yaml").write_text(config)
            env = {k: v for k, v in os.environ.items() if k != "JIRA_CLOUD_IDS"}
            env.update(
                ATLASSIAN_CLIENT_ID="sim-client-id",
                ATLASSIAN_CLIENT_SECRET="sim-client-secret",
                ATLASSIAN_AUTH_URL=sim.url,
                ATLASSIAN_API_URL=sim.url,
                JIRA_REDIRECT_URI=redirect,
                JIRA_WAREHOUSE_URL=store.url,
                JIRA_PARQUET_DIR=str(tmp / f"parquet_{label}"),
                JIRA_TOKEN_ENCRYPTION_KEY=generate_key(),
                JIRA_START_DATE=start_date,
                DAGSTER_HOME=str(home),
            )
            env.update(args.sync_env)
            connect(env, tmp, label)
            return Target(env, store, watch)

        def run(name: str, argv: list[str], t: Target) -> Phase:
            phase = run_phase(name, argv, t.env, sim, t.store.url, tmp, args.timeout, t.watch_dbs)
            phases.append(phase)
            return phase

        phases: list[Phase] = []
        dagster = target("dagster")
        direct = None if args.no_direct else target("direct")
        direct_argv = [sys.executable, "-m", "jira_pipeline_tests.bench_sync", "--direct"]
        print("Measuring (each sync is its own process)...", flush=True)
        run("full", jira_pipeline_argv("sync", "--full"), dagster)
        if direct:
            run("full, no Dagster", direct_argv, direct)
        run("no-change incr.", jira_pipeline_argv("sync"), dagster)
        if direct:
            run("no-change, no Dagster", [*direct_argv, "--incremental"], direct)
        changed = sim.mutate(update_issues=args.update_issues, add_worklogs=args.add_worklogs, seed=args.seed)
        sim.advance(args.advance)  # past the worklog feed's 60 s hold-back
        touched = len(set(changed["updated_issues"]) | set(changed["touched_issues"]))
        run("small-change incr.", jira_pipeline_argv("sync"), dagster).notes.append(
            f"mutation: {len(changed['updated_issues'])} issues updated, {len(changed['added_worklogs'])} worklogs "
            f"added ({touched} distinct issues changed), simulator clock +{args.advance:.0f} s"
        )
        prof_file = tmp / "direct_full.pstats"
        if args.profile:
            prof = run("full, no Dagster, cProfile", [*direct_argv, "--profile", str(prof_file)], target("profile"))
            prof.notes.append(f"cProfile of every thread inflates the wall time; stats in {prof_file}")

        meta = {
            "cpus": os.cpu_count(), "mem": machine_memory(), "issues": args.issues, "worklogs": args.worklogs,
            "users": args.users, "projects": args.projects, "latency": args.latency_ms,
            "latency_seen": latency_seen, "gen": sim.generation_s,
            "warm": warm, "store": args.store, "dagster_storage": (
                "SQLite in DAGSTER_HOME (dagster.local.yaml)" if args.dagster_storage == "sqlite" else "PostgreSQL"
            ),
            "sync_env": " ".join(f"{k}={v}" for k, v in args.sync_env) or "-",
            "start": start_date, "partitions": partitions, "py": sys.version.split()[0], "code": code_version(),
        }  # fmt: skip
        if args.json:
            args.json.write_text(
                json.dumps(
                    {"meta": meta, "argv": argv, "phases": [phase_json(p) for p in phases]}, indent=2, default=str
                )
            )
        print()
        print(report(phases, meta))
        for p in phases:
            for note in p.notes:
                print(f"{p.name}: {note}")
        print(f"\nRerun: python -m jira_pipeline_tests.bench_sync {' '.join(argv)}".rstrip())
        if args.profile:
            print_profile(prof_file)
        return 0
    finally:
        if sim is not None:
            sim.stop()
        if args.keep:
            print(f"Kept {tmp}" + "".join(f"\nKept database {s.url}" for s in stores if s.pg_admin))
        else:
            for s in stores:
                with contextlib.suppress(Exception):
                    s.drop()
            shutil.rmtree(tmp, ignore_errors=True)


def phase_json(p: Phase) -> dict[str, Any]:
    proc = {k: v for k, v in p.proc.__dict__.items() if k != "output"}
    return {
        "name": p.name, "proc": proc, "api": p.api, "rows": p.rows, "summary": p.summary, "sim_cpu_s": p.sim_cpu_s,
        "load_before": p.load_before, "load_after": p.load_after, "timeline": p.timeline, "direct": p.direct,
        "notes": p.notes,
    }  # fmt: skip


#: Blocking calls whose own time is waiting, not work: idle pool threads, the simulated latency, locks, and
#: psycopg waiting for the PostgreSQL server (its C wait loop is not profiled separately).
_WAITS = ("of '_queue.SimpleQueue' objects", "'recv_into' of '_socket.socket'", "'acquire' of '_thread.lock'")


def _is_wait(key: tuple[str, int, str]) -> bool:
    filename, _, func = key
    return any(w in func for w in _WAITS) or (filename.endswith("psycopg/connection.py") and func == "wait")


def print_profile(path: Path, limit: int = 25) -> None:
    """Where the CPU went, all threads merged: own time per source file (builtins by name), then the top
    functions by own and by cumulative time. Blocking waits (idle pool threads, socket reads = the
    simulated latency, locks) are left out of the own-time views: with 8 fetch threads they add up to
    many times the wall time and say nothing about CPU."""
    import io
    import pstats

    stats = pstats.Stats(str(path))
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    waits = {k: v for k, v in raw.items() if _is_wait(k)}
    by_file: dict[str, float] = {}
    for key, (_, _, tottime, _, _) in raw.items():
        if key in waits:
            continue
        filename, _, func = key
        name = Path(filename).name if filename != "~" else func
        by_file[name] = by_file.get(name, 0.0) + tottime
    total = sum(by_file.values())
    print(f"\n--- profile: own time by file, {total:.0f} s in all (waits left out: ", end="")
    shown = sorted(
        ((v[2], f"{Path(k[0]).name}:{k[2]}" if k[0] != "~" else k[2]) for k, v in waits.items()), reverse=True
    )
    print(", ".join(f"{name} {secs:.0f} s" for secs, name in shown if secs >= 0.5) + ") ---")
    for name, secs in sorted(by_file.items(), key=lambda kv: -kv[1])[:limit]:
        print(f"{secs:9.1f} s  {100 * secs / total:5.1f} %  {name}")
    for key in waits:
        del raw[key]
    for order in ("tottime", "cumulative"):
        buf = io.StringIO()
        stats.stream = buf  # type: ignore[attr-defined]
        stats.strip_dirs().sort_stats(order).print_stats(limit)
        text = buf.getvalue()
        print(f"\n--- profile: top {limit} by {order} ---")
        print(text[text.find("   ncalls") :] if "   ncalls" in text else text)


if __name__ == "__main__":
    raise SystemExit(main())
