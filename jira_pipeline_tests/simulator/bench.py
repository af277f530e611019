"""Benchmark: a 20k-issue simulator, a full id walk and a bulk fetch of every issue.

``python -m jira_pipeline_tests.simulator.bench [--issues 20000] [--worklogs 60000] [--threads 8]``

Starts the simulator (by default in its own process, as the pipeline would meet it: in one
process the client's JSON parsing and the server share a GIL), then prints the generation time,
the walk+fetch time (``search/jql`` with ``fields=id`` at 5000 a page, then ``issue/bulkfetch`` of
100 ids per call from 8 threads with plain `requests`, bodies parsed), the number of requests
and the bytes received; a second, warm pass shows the cost once bodies are cached.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from .config import DEFAULT_REDIRECT_URI, SimConfig
from .server import Simulator

CLIENT_ID = "sim-client-id"
CLIENT_SECRET = "sim-client-secret"


def login(url: str) -> str:
    """The 3LO dance over plain HTTP; returns an access token."""
    r = requests.get(
        f"{url}/authorize",
        params={
            "audience": "api.atlassian.com",
            "client_id": CLIENT_ID,
            "scope": "read:jira-work read:jira-user offline_access",
            "redirect_uri": DEFAULT_REDIRECT_URI,
            "state": "bench",
            "response_type": "code",
        },
        allow_redirects=False,
        timeout=30,
    )
    code = parse_qs(urlsplit(r.headers["Location"]).query)["code"][0]
    r = requests.post(
        f"{url}/oauth/token",
        json={
            "grant_type": "authorization_code",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "code": code,
            "redirect_uri": DEFAULT_REDIRECT_URI,
        },
        timeout=30,
    )
    r.raise_for_status()
    return str(r.json()["access_token"])


def walk_and_fetch(base: str, token: str, threads: int, fields: list[str]) -> tuple[float, int, int, int]:
    local = threading.local()

    def session() -> requests.Session:
        s = getattr(local, "s", None)
        if s is None:
            s = local.s = requests.Session()
            s.headers["Authorization"] = f"Bearer {token}"
        return s

    t0 = time.perf_counter()
    requests_made = 0
    received = 0
    ids: list[str] = []
    next_token = None
    while True:
        body: dict[str, Any] = {"jql": "created >= 0 ORDER BY id ASC", "fields": ["id"], "maxResults": 5000}
        if next_token:
            body["nextPageToken"] = next_token
        r = session().post(f"{base}/search/jql", json=body, timeout=60)
        r.raise_for_status()
        requests_made += 1
        received += len(r.content)
        page = r.json()
        ids.extend(i["id"] for i in page["issues"])
        if page["isLast"]:
            break
        next_token = page["nextPageToken"]

    def fetch(chunk: list[str]) -> tuple[int, int]:
        r = session().post(
            f"{base}/issue/bulkfetch", json={"issueIdsOrKeys": chunk, "fields": fields}, timeout=120
        )
        r.raise_for_status()
        return len(r.json()["issues"]), len(r.content)

    chunks = [ids[i : i + 100] for i in range(0, len(ids), 100)]
    fetched = 0
    with ThreadPoolExecutor(threads) as pool:
        for n, size in pool.map(fetch, chunks):
            fetched += n
            received += size
            requests_made += 1
    return time.perf_counter() - t0, requests_made, received, fetched


def _spawn(issues: int, worklogs: int) -> tuple[subprocess.Popen[str], str, str, float]:
    cmd = [sys.executable, "-m", "jira_pipeline_tests.simulator", "--port", "0", "--issues", str(issues),
           "--worklogs", str(worklogs), "--users", "200", "--projects", "6"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    text = ""
    while "Ctrl-C" not in text:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"simulator exited early:\n{text}")
        text += line
    url = re.search(r"listening on (\S+)", text)
    gen = re.search(r"generated in ([\d.]+)s", text)
    cloud = re.search(r"cloud_id=(\S+)", text)
    assert url and gen and cloud, text
    return proc, url.group(1), cloud.group(1), float(gen.group(1))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Jira simulator benchmark")
    p.add_argument("--issues", type=int, default=20000)
    p.add_argument("--worklogs", type=int, default=60000)
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--fields", default="*all", help="bulkfetch fields, comma-separated (default *all)")
    p.add_argument("--in-process", action="store_true", help="run the simulator in this process")
    a = p.parse_args(argv)
    sim: Simulator | None = None
    proc: subprocess.Popen[str] | None = None
    if a.in_process:
        t0 = time.perf_counter()
        sim = Simulator(SimConfig(issues=a.issues, worklogs=a.worklogs, users=200, projects=6)).start()
        gen = time.perf_counter() - t0
        url, cloud_id = str(sim.url), sim.sites[0].cloud_id
    else:
        proc, url, cloud_id, gen = _spawn(a.issues, a.worklogs)
    try:
        token = login(url)
        base = f"{url}/ex/jira/{cloud_id}/rest/api/3"
        where = "in-process" if a.in_process else "own process"
        print(f"generation: {gen:.2f}s ({a.issues} issues, {a.worklogs} worklogs, 1 site, simulator {where})")
        for label in ("cold", "warm"):
            secs, reqs, size, fetched = walk_and_fetch(base, token, a.threads, a.fields.split(","))
            print(
                f"walk+fetch ({label}, fields={a.fields}, {a.threads} threads): {secs:.2f}s, "
                f"{reqs} requests, {size / 1e6:.1f} MB, {fetched} issues, {fetched / secs:.0f} issues/s"
            )
    finally:
        if sim is not None:
            sim.stop()
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
    return 1 if sim is not None and sim.errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
