"""Helpers for test_topology.py: supervised process groups, a /proc scan for strays, a small client for
the Dagster webserver's GraphQL, and a simulator launcher that also writes the simulator's truth.

Run as a program it is that launcher::

    python -m jira_pipeline_tests.topology_support simulator --port 0 --history-days 30 \\
        --redirect-uri http://127.0.0.1:8000/api/v1/auth/jira/connector/callback --truth-file truth.json

It exists beside ``python -m jira_pipeline_tests.simulator`` because the topology test needs two things
that CLI does not offer: the generated history squeezed into a recent window (``SimConfig.history_days``
has no flag), and the truth of a simulator living in another process (``Simulator.truth()`` has no
``/_sim/`` endpoint).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import requests

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

T = TypeVar("T")

#: Log lines that drown the interesting ones in a failure message (the run queue logs one every 5 s).
LOG_NOISE = ("Priority sorting and checking tag concurrency limits",)


def free_port() -> int:
    """A port that was free a moment ago. Racy by nature; the services bind it within seconds."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], T | None], timeout: float, what: str, diagnostics: Callable[[], str]) -> T:
    """Poll `check` until it returns something other than None/False; fail with `diagnostics()` on timeout.

    Exceptions from `check` count as "not yet" (a service that is still starting refuses connections)
    and the last one is kept for the failure message; an AssertionError (a service died, an answer
    that can only be wrong) fails at once instead of burning the timeout.
    """
    deadline = time.monotonic() + timeout
    last_error = ""
    while True:
        try:
            result = check()
        except AssertionError:
            raise
        except Exception as exc:
            result = None
            last_error = f"{type(exc).__name__}: {exc}"
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {what}"
                + (f" (last error: {last_error})" if last_error else "")
                + "\n"
                + diagnostics()
            )
        time.sleep(0.5)


# ----------------------------------------------------------------------------------------------------
# Processes
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    sid: int
    state: str
    cmdline: str

    def __str__(self) -> str:
        return f"pid {self.pid} (ppid {self.ppid}, state {self.state}): {self.cmdline[:200]}"


def _read_proc(pid: int) -> ProcInfo | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        raw_cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # `comm` (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    state, ppid, _pgrp, sid = fields[0], int(fields[1]), int(fields[2]), int(fields[3])
    cmdline = raw_cmd.replace(b"\0", b" ").decode(errors="replace").strip()
    return ProcInfo(pid, ppid, sid, state, cmdline)


def all_processes() -> list[ProcInfo]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            info = _read_proc(int(entry.name))
            if info is not None:
                found.append(info)
    return found


def session_members(sessions: Iterable[int]) -> list[ProcInfo]:
    """Every process whose session is one of `sessions`, zombies included (state Z).

    Each supervised service is started in a session of its own and Dagster never calls setsid()
    (dagster_shared.ipc.open_ipc_subprocess only creates new process groups on Windows), so the
    session holds the whole tree: the code server's gRPC child, the run workers it spawns and their
    step processes, uvicorn's workers. Linux-only (/proc), like the CI this runs on.
    """
    wanted = set(sessions)
    return [p for p in all_processes() if p.sid in wanted]


def descendants(roots: Iterable[int]) -> list[ProcInfo]:
    """The process trees under `roots` by parent pid, whatever their session: catches a child that
    left the session (setsid, a daemonizing double fork still in progress) while its parent lives."""
    wanted = set(roots)
    procs = all_processes()
    children: dict[int, list[ProcInfo]] = {}
    for p in procs:
        children.setdefault(p.ppid, []).append(p)
    out: list[ProcInfo] = []
    todo = [p for p in procs if p.pid in wanted]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p.pid, []))
    return out


def still_alive(snapshot: Iterable[ProcInfo]) -> list[ProcInfo]:
    """Those of `snapshot` that still run (same pid AND command line, so a recycled pid does not count)."""
    out = []
    for p in snapshot:
        now = _read_proc(p.pid)
        if now is not None and now.state != "Z" and now.cmdline == p.cmdline:
            out.append(now)
    return out


def _reset_signals() -> None:
    """Runs in the child before exec. A shell that starts a job in the background without job
    control sets SIGINT to "ignore", and an ignored signal stays ignored across exec; Dagster turns
    SIGTERM into SIGINT, so such a child would shrug off SIGTERM. Give every service the defaults."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@dataclass
class Service:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes]
    log: Path
    #: set by Supervisor.stop(): whether SIGTERM sufficed, and what SIGKILL had to take down otherwise
    stopped: bool = False
    killed: bool = False
    leftovers: list[ProcInfo] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        if not self.stopped:
            return "running" if self.proc.poll() is None else f"exited by itself ({self.proc.returncode})"
        how = "SIGKILL" if self.killed else "SIGTERM"
        left = f", killed: {'; '.join(map(str, self.leftovers))}" if self.leftovers else ""
        return f"{how}, exit {self.proc.returncode}{left}"


@dataclass
class Supervisor:
    """Starts services in sessions of their own and stops them, whole trees included.

    Stop order is the reverse of start order, so the daemon and webserver go before the code server
    they talk to (as `docker compose down` would, following depends_on).
    """

    log_dir: Path
    services: list[Service] = field(default_factory=list)

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str], cwd: Path) -> Service:
        log = self.log_dir / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_reset_signals,  # only signal.signal(): nothing that could deadlock on a lock
            )
        service = Service(name, list(argv), proc, log)
        self.services.append(service)
        return service

    def __getitem__(self, name: str) -> Service:
        return next(s for s in self.services if s.name == name)

    @property
    def sessions(self) -> set[int]:
        return {s.proc.pid for s in self.services}

    def alive(self) -> list[ProcInfo]:
        """Supervised processes still running (zombies are dead: they only wait to be reaped)."""
        return [p for p in session_members(self.sessions) if p.state != "Z"]

    def assert_running(self) -> None:
        dead = [f"{s.name} exited with {s.proc.returncode}" for s in self.services if s.proc.poll() is not None]
        assert not dead, "; ".join(dead) + "\n" + self.logs()

    def logs(self, tail: int = 4000) -> str:
        """The end of every service's output, minus lines that repeat every few seconds."""
        parts = []
        for s in self.services:
            text = s.log.read_text(errors="replace") if s.log.exists() else ""
            text = "".join(line for line in text.splitlines(keepends=True) if not any(n in line for n in LOG_NOISE))
            parts.append(f"----- {s.name} ({' '.join(s.argv[:3])} ...) last {tail} chars -----\n{text[-tail:]}")
        return "\n".join(parts)

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM each group in turn, wait for its whole session to go, SIGKILL whatever is left.

        Records on each service whether SIGTERM sufficed (`killed` False) and which processes SIGKILL
        had to take down. Idempotent, so a fixture can call it again after a failed test.
        """
        for service in reversed(self.services):
            if service.stopped:
                continue
            sid = service.proc.pid
            try:
                os.killpg(sid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                if service.proc.poll() is not None and not [p for p in session_members([sid]) if p.state != "Z"]:
                    break
                time.sleep(0.2)
            service.leftovers = [p for p in session_members([sid]) if p.state != "Z"]
            if service.proc.poll() is None or service.leftovers:
                service.killed = True
                for p in service.leftovers:
                    try:
                        os.kill(p.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                try:
                    os.killpg(sid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                service.proc.wait(timeout=10)
                # SIGKILL is asynchronous: give the kernel a moment to finish off the orphans too.
                deadline = time.monotonic() + 10
                while [p for p in session_members([sid]) if p.state != "Z"] and time.monotonic() < deadline:
                    time.sleep(0.1)
            service.stopped = True


# ----------------------------------------------------------------------------------------------------
# The webserver's GraphQL
# ----------------------------------------------------------------------------------------------------


class GraphQLError(Exception):
    """An HTTP or GraphQL-level error; retryable in `wait_for` (the webserver may still be loading)."""


@dataclass(frozen=True)
class DagsterGraphQL:
    """POSTs to `<webserver>/graphql`, the API the Dagster UI itself uses."""

    base_url: str

    def __call__(self, query: str, variables: Mapping[str, Any] | None = None, timeout: float = 60) -> dict[str, Any]:
        response = requests.post(
            f"{self.base_url}/graphql", json={"query": query, "variables": dict(variables or {})}, timeout=timeout
        )
        if response.status_code != 200:
            raise GraphQLError(f"GraphQL HTTP {response.status_code}: {response.text[:2000]}")
        body = response.json()
        if body.get("errors"):
            raise GraphQLError(f"GraphQL errors: {json.dumps(body['errors'])[:3000]}")
        return body["data"]


RUN_EVENTS_QUERY = """
query RunEvents($runId: ID!) {
  logsForRun(runId: $runId, limit: 5000) {
    __typename
    ... on EventConnection {
      events {
        __typename
        ... on MessageEvent { message level stepKey }
        ... on ErrorEvent { error { message stack causes { message stack } } }
      }
    }
    ... on PythonError { message }
  }
}
"""


def run_error_report(gql: DagsterGraphQL, run_id: str, limit: int = 12000) -> str:
    """The run's ERROR-level and failure events, with Python tracebacks, for an assertion message."""
    try:
        data = gql(RUN_EVENTS_QUERY, {"runId": run_id})["logsForRun"]
    except Exception as exc:  # diagnostics must never hide the original failure
        return f"(could not read the events of run {run_id}: {exc})"
    lines = [f"== run {run_id}: {data.get('__typename')}"]
    for event in data.get("events") or []:
        error = event.get("error")
        if event.get("level") not in ("ERROR", "CRITICAL") and not error:
            continue
        lines.append(f"[{event['__typename']} {event.get('stepKey') or ''}] {event.get('message', '')}")
        while error:
            lines.append("".join(error.get("stack") or []) + (error.get("message") or ""))
            causes = error.get("causes") or []
            error = causes[0] if causes else None
    return "\n".join(lines)[:limit]  # the first failure is the one that matters


# ----------------------------------------------------------------------------------------------------
# The simulator in a process of its own, and its truth
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimTruth:
    """What the simulator generated (one site), as written by the launcher below."""

    url: str
    client_id: str
    client_secret: str
    cloud_id: str
    site_name: str
    projects: dict[str, bool]  # id -> archived
    users: set[str]
    issues: dict[str, tuple[str, datetime]]  # id -> (project id, updated)
    worklogs: dict[str, datetime]  # id -> updated

    @classmethod
    def load(cls, path: Path) -> SimTruth:
        raw = json.loads(path.read_text(encoding="utf-8"))
        (site,) = raw["sites"]
        return cls(
            url=raw["url"],
            client_id=raw["client_id"],
            client_secret=raw["client_secret"],
            cloud_id=site["cloud_id"],
            site_name=site["name"],
            projects={p["id"]: p["archived"] for p in raw["projects"]},
            users=set(raw["users"]),
            issues={i["id"]: (i["project_id"], datetime.fromisoformat(i["updated"])) for i in raw["issues"]},
            worklogs={w["id"]: datetime.fromisoformat(w["updated"]) for w in raw["worklogs"]},
        )


def day_window(partition_key: str, days: int = 1) -> tuple[datetime, datetime]:
    """[start, end) in UTC of `days` daily partitions starting at `partition_key` (the assets' UTC days)."""
    start = datetime.fromisoformat(partition_key).replace(tzinfo=UTC)
    return start, start + timedelta(days=days)


def in_windows(moment: datetime, windows: Sequence[tuple[datetime, datetime]]) -> bool:
    return any(start <= moment < end for start, end in windows)


def _write_truth(sim: Any, path: Path) -> None:
    truth = sim.truth()
    payload = {
        "url": sim.url,
        "client_id": sim.cfg.client_id,
        "client_secret": sim.cfg.client_secret,
        "sites": [{"cloud_id": s.cloud_id, "name": s.name, "url": s.url} for s in sim.sites],
        "projects": [{"id": p["id"], "archived": p["is_archived"]} for p in truth["jira_projects"]],
        "users": [u["account_id"] for u in truth["jira_users"]],
        "issues": [
            {"id": i["id"], "project_id": i["project_id"], "updated": i["updated"].isoformat()}
            for i in truth["jira_issues"]
        ],
        "worklogs": [{"id": w["id"], "updated": w["updated"].isoformat()} for w in truth["jira_worklogs"]],
    }
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(payload), encoding="utf-8")
    partial.replace(path)  # atomic: the test polls for this file as the readiness signal


def simulator_main(argv: Sequence[str] | None = None) -> int:
    from jira_pipeline_tests.simulator import SimConfig, Simulator

    p = argparse.ArgumentParser(prog="python -m jira_pipeline_tests.topology_support simulator")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--issues", type=int, default=200)
    p.add_argument("--worklogs", type=int, default=600)
    p.add_argument("--users", type=int, default=30)
    p.add_argument("--projects", type=int, default=4)
    p.add_argument("--history-days", type=int, default=30)
    p.add_argument("--redirect-uri", action="append", required=True)
    p.add_argument("--truth-file", type=Path, required=True)
    a = p.parse_args(argv)
    cfg = SimConfig(
        seed=a.seed,
        issues=a.issues,
        worklogs=a.worklogs,
        users=a.users,
        projects=a.projects,
        history_days=a.history_days,
        redirect_uris=tuple(a.redirect_uri),
        comments_per_issue=0.5,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    sim = Simulator(cfg).start(port=a.port)
    try:
        _write_truth(sim, a.truth_file)
        print(f"Jira simulator listening on {sim.url}", flush=True)
        while not stop.wait(0.5):
            pass
        if sim.errors:
            print("simulator handler errors:\n" + "\n".join(sim.errors), flush=True)
            return 1
    finally:
        sim.stop()
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] != ["simulator"]:
        sys.exit("usage: python -m jira_pipeline_tests.topology_support simulator [options]")
    sys.exit(simulator_main(sys.argv[2:]))
