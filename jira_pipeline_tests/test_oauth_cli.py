"""`jira-pipeline connect | status | keygen` as real subprocesses, configured only through the
environment (CONTRACT §1), against the simulator and the test store (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from cryptography.fernet import Fernet

from jira_pipeline.atlassian.oauth import ReconsentRequired
from jira_pipeline.connect.app import Connector
from jira_pipeline.crypto import TokenCipher, generate_key
from jira_pipeline.grants import GrantManager, utcnow
from jira_pipeline.warehouse.store import Warehouse
from jira_pipeline_tests.rotation_race import (
    callback_uri,
    connect_headless,
    free_port,
    issued_secrets,
    leaked,
    oauth_config,
    pipeline_env,
    reset_simulator,
    small_simulator,
)
from jira_pipeline_tests.simulator import Simulator

CLI = str(Path(sys.executable).with_name("jira-pipeline"))


@dataclass
class Env:
    sim: Simulator
    redirect_uri: str
    warehouse_url: str
    key: str
    vars: dict[str, str]

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [CLI, *args], env={**os.environ, **self.vars}, capture_output=True, text=True, timeout=timeout
        )

    def secrets(self) -> set[str]:
        return issued_secrets(self.sim) | {self.key}


@pytest.fixture(scope="module")
def module_sim() -> Iterator[tuple[Simulator, str]]:
    redirect_uri = callback_uri(free_port())
    sim = small_simulator(redirect_uri)
    yield sim, redirect_uri
    sim.stop()


@pytest.fixture
def env(module_sim: tuple[Simulator, str], warehouse_url: str, tmp_path: Path) -> Iterator[Env]:
    sim, redirect_uri = module_sim
    reset_simulator(sim)
    key = generate_key()
    variables = pipeline_env(sim, redirect_uri, warehouse_url, key, str(tmp_path))
    yield Env(sim, redirect_uri, warehouse_url, key, variables)
    assert sim.errors == []


def _start_connect(env: Env) -> tuple[subprocess.Popen[str], str]:
    """Start `jira-pipeline connect --no-browser`; return it and the authorization URL it printed."""
    proc = subprocess.Popen(
        [CLI, "connect", "--no-browser", "--timeout", "60"],
        env={**os.environ, **env.vars},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("http"):
            return proc, line.strip()
    proc.kill()
    raise AssertionError(f"no authorization URL printed: {proc.communicate()}")


def test_connect_no_browser_prints_the_url_and_stores_the_grant(env: Env) -> None:
    proc, url = _start_connect(env)
    try:
        assert url.startswith(f"{env.sim.url}/authorize?")
        page = requests.get(url, timeout=30)  # the "browser": /authorize consents and redirects back
        assert page.status_code == 200 and "Jira connected" in page.text
        assert page.url.startswith(env.redirect_uri)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert f"Connected: {env.sim.sites[0].name} ({env.sim.sites[0].cloud_id})" in out
    assert leaked(out + err, env.secrets()) == []
    wh = Warehouse(env.warehouse_url)
    (grant,) = wh.list_grants()
    wh.close()
    assert grant["status"] == "active" and grant["sites"][0]["id"] == env.sim.sites[0].cloud_id
    (sim_grant,) = env.sim.auth.live_grants()
    assert TokenCipher(env.key).decrypt(grant["refresh_token_enc"]) == sim_grant.current


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_connect_ends_at_once_when_the_user_denies_access(env: Env) -> None:
    env.sim.consent_mode = "deny"
    proc, url = _start_connect(env)
    try:
        page = requests.get(url, timeout=30)
        assert page.status_code == 403
        err = proc.communicate(timeout=15)[1]  # not the 60 s --timeout: the denial ends the wait
    finally:
        proc.kill()
    assert proc.returncode == 1
    assert "Access was not granted" in err and "Nothing was stored" in err


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_keygen_prints_a_fresh_fernet_key(env: Env) -> None:
    run = env.run("keygen")
    assert run.returncode == 0
    key = run.stdout.strip()
    assert key != env.key and len(run.stdout.splitlines()) == 1
    token = Fernet(key.encode()).encrypt(b"x")
    assert TokenCipher(key).decrypt(token.decode()) == "x"


def test_status_lists_sites_scopes_expiry_and_age_but_no_secret(env: Env) -> None:
    empty = env.run("status")
    assert empty.returncode == 1
    assert "No Jira site is connected" in empty.stdout and "jira-pipeline connect" in empty.stdout

    wh = Warehouse(env.warehouse_url)
    manager = GrantManager(wh, oauth_config(env.sim, env.redirect_uri), TokenCipher(env.key))
    result = connect_headless(Connector(manager))
    with wh.lock_grant(result.grant_id) as row:  # a grant connected 40 days ago
        assert row is not None
        row["created_at"] = utcnow() - timedelta(days=40)
    manager.refresh(result.grant_id, force=True)
    stored = wh.get_grant(result.grant_id)
    assert stored is not None

    status = env.run("status")
    assert status.returncode == 0, status.stderr
    out = status.stdout
    site = env.sim.sites[0]
    assert site.name in out and site.cloud_id in out and site.url in out
    assert "read:jira-work read:jira-user offline_access" in out
    assert f"access token expires: {stored['access_expires_at']:%Y-%m-%d %H:%M:%S} UTC (in " in out
    assert "grant age: 40 days; refreshed 1 times" in out
    for secret in (stored["refresh_token_enc"], stored["access_token_enc"], env.sim.cfg.client_secret):
        assert secret not in out + status.stderr
    assert leaked(out + status.stderr, env.secrets()) == []

    env.sim.revoke_all_grants()
    manager.access_token(result.grant_id)  # still fresh: Atlassian's access tokens outlive a revocation
    with pytest.raises(ReconsentRequired, match="jira-pipeline connect"):
        manager.refresh(result.grant_id, force=True)
    wh.close()
    revoked = env.run("status")
    assert revoked.returncode == 1
    assert ": revoked" in revoked.stdout and "jira-pipeline connect" in revoked.stdout
    assert leaked(revoked.stdout + revoked.stderr, env.secrets()) == []
