"""``python -m jira_pipeline_tests.simulator``: serve a simulator until SIGINT/SIGTERM.

Prints the URL, the (fake) client id/secret and the sites, then serves on 127.0.0.1 only.
Point the pipeline at it with ``ATLASSIAN_AUTH_URL=ATLASSIAN_API_URL=<url>``. The ``/_sim/*``
control endpoints (advance, mutate, faults, consent, revoke, state) drive it from outside.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from .config import DEFAULT_REDIRECT_URI, SimConfig
from .server import Simulator


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m jira_pipeline_tests.simulator",
        description="Local Atlassian OAuth + Jira Cloud REST v3 simulator",
    )
    p.add_argument("--port", type=int, default=8080, help="port on 127.0.0.1 (0 = any free port)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--sites", type=int, default=1)
    p.add_argument("--projects", type=int, default=4)
    p.add_argument("--users", type=int, default=40)
    p.add_argument("--issues", type=int, default=300)
    p.add_argument("--worklogs", type=int, default=900)
    p.add_argument("--tz", default="UTC", help="time zone of the searching user (JQL literals, rendering)")
    p.add_argument("--latency-ms", type=int, default=0)
    p.add_argument("--token-ttl", type=int, default=3600, help="access-token lifetime in seconds")
    p.add_argument(
        "--refresh-leeway", type=int, default=600, help="seconds a rotated refresh token still works"
    )
    p.add_argument("--client-id", default="sim-client-id")
    p.add_argument("--client-secret", default="sim-client-secret")
    p.add_argument(
        "--redirect-uri",
        action="append",
        default=None,
        help=f"registered callback (repeatable; default {DEFAULT_REDIRECT_URI})",
    )
    p.add_argument("--index-lag", type=float, default=0, help="seconds before changes become searchable")
    p.add_argument("--rate-429", type=float, default=0.0)
    p.add_argument("--rate-5xx", type=float, default=0.0)
    p.add_argument("--drop-rate", type=float, default=0.0)
    p.add_argument("--retry-after", type=int, default=1)
    p.add_argument("--consent", choices=("allow", "deny"), default="allow")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    cfg = SimConfig(
        seed=a.seed,
        sites=a.sites,
        projects=a.projects,
        users=a.users,
        issues=a.issues,
        worklogs=a.worklogs,
        user_timezone=a.tz,
        access_token_ttl=a.token_ttl,
        refresh_leeway=a.refresh_leeway,
        client_id=a.client_id,
        client_secret=a.client_secret,
        redirect_uris=tuple(a.redirect_uri or (DEFAULT_REDIRECT_URI,)),
        latency_ms=a.latency_ms,
        index_lag_seconds=a.index_lag,
        retry_after_seconds=a.retry_after,
    )
    sim = Simulator(cfg)
    sim.set_faults(rate_429=a.rate_429, rate_5xx=a.rate_5xx, drop_rate=a.drop_rate)
    sim.consent_mode = a.consent
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    sim.start(port=a.port)
    print(f"Jira simulator listening on {sim.url}", flush=True)
    print(f"  ATLASSIAN_AUTH_URL={sim.url}")
    print(f"  ATLASSIAN_API_URL={sim.url}")
    print(f"  ATLASSIAN_CLIENT_ID={cfg.client_id}")
    print(f"  ATLASSIAN_CLIENT_SECRET={cfg.client_secret}   (fake, simulator only)")
    print(f"  redirect URIs: {', '.join(cfg.redirect_uris)}")
    print(
        f"  generated in {sim.generation_seconds:.2f}s: {cfg.issues} issues, {cfg.worklogs} worklogs per site"
    )
    for s in sim.sites:
        print(f"  site {s.name}: cloud_id={s.cloud_id} url={s.url}")
    print("Ctrl-C to stop.", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        sim.stop()
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
