"""The connector web app driven like a browser, over real HTTP, against the simulator (SQLite and
PostgreSQL): the happy path through a running `jira-pipeline serve` process, every rejected callback
(forged, replayed and expired state, access denied, wrong client secret, unregistered redirect URI)
with a clear 4xx page and nothing stored, and /healthz.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from jira_pipeline.cli import CallbackServer
from jira_pipeline.connect.app import ADD_PATH, CALLBACK_PATH, Connector, create_app
from jira_pipeline.crypto import TokenCipher, generate_key
from jira_pipeline.grants import GrantManager, utcnow
from jira_pipeline.warehouse.store import Warehouse
from jira_pipeline_tests.conftest import drop_database
from jira_pipeline_tests.rotation_race import (
    callback_uri,
    free_port,
    issued_secrets,
    leaked,
    oauth_config,
    pipeline_env,
    reset_simulator,
    small_simulator,
)
from jira_pipeline_tests.simulator import Simulator
from jira_pipeline_tests.simulator.testing import authorize_code

CLI = str(Path(sys.executable).with_name("jira-pipeline"))


@dataclass
class Stack:
    sim: Simulator
    port: int
    redirect_uri: str
    warehouse_url: str
    key: str
    env: dict[str, str]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def warehouse(self) -> Warehouse:
        return Warehouse(self.warehouse_url)

    def manager(self, *, client_secret: str | None = None, redirect_uri: str | None = None) -> GrantManager:
        return GrantManager(
            self.warehouse(),
            oauth_config(self.sim, redirect_uri or self.redirect_uri, client_secret=client_secret),
            TokenCipher(self.key),
        )


@pytest.fixture(scope="module")
def module_sim() -> Iterator[tuple[Simulator, int]]:
    """One simulator for the module, registered for one callback port that each test's server takes in turn."""
    port = free_port()
    sim = small_simulator(callback_uri(port))
    yield sim, port
    sim.stop()


@pytest.fixture
def stack(module_sim: tuple[Simulator, int], warehouse_url: str, tmp_path: Path) -> Iterator[Stack]:
    sim, port = module_sim
    reset_simulator(sim)
    redirect_uri = callback_uri(port)
    key = generate_key()
    env = pipeline_env(sim, redirect_uri, warehouse_url, key, str(tmp_path / "parquet"))
    yield Stack(sim, port, redirect_uri, warehouse_url, key, env)
    assert sim.errors == []


def _state_of(authorize_url: str) -> str:
    return parse_qs(urlsplit(authorize_url).query)["state"][0]


def assert_nothing_stored(stack: Stack) -> None:
    wh = stack.warehouse()
    try:
        assert wh.list_grants() == []
    finally:
        wh.close()


# ---------------------------------------------------------------------------------- happy path
def test_browser_flow_through_a_running_connector(stack: Stack) -> None:
    """`jira-pipeline serve` as its own process: /add -> simulator /authorize -> /callback page."""
    server = subprocess.Popen(
        [CLI, "serve"],
        env={**os.environ, **stack.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{stack.base}/healthz", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert server.poll() is None, server.communicate()[0]
            assert time.monotonic() < deadline, "connector did not come up"
            time.sleep(0.1)

        page = requests.get(f"{stack.base}{ADD_PATH}", timeout=30)  # a browser follows both redirects
        assert [r.status_code for r in page.history] == [302, 302]
        assert page.history[0].headers["Location"].startswith(f"{stack.sim.url}/authorize?")
        assert page.url.startswith(stack.redirect_uri + "?")
        assert page.status_code == 200, page.text
        assert "Jira connected" in page.text
        for site in stack.sim.sites:
            assert site.name in page.text and site.cloud_id in page.text

        wh = stack.warehouse()
        (grant,) = wh.list_grants()
        assert grant["status"] == "active"
        assert {s["id"] for s in grant["sites"]} == {s.cloud_id for s in stack.sim.sites}
        (sim_grant,) = stack.sim.auth.live_grants()
        assert TokenCipher(stack.key).decrypt(grant["refresh_token_enc"]) == sim_grant.current
        assert sim_grant.current not in grant["refresh_token_enc"]

        replay = requests.get(page.url, timeout=30)  # the same callback URL again (back button, attacker)
        assert replay.status_code == 400 and "already used" in replay.text
        assert "Nothing was stored" in replay.text
        (after,) = wh.list_grants()
        assert after["refresh_token_enc"] == grant["refresh_token_enc"]
        assert stack.sim.stats.code_exchanges == 1
        wh.close()
    finally:
        server.terminate()
        output = server.communicate(timeout=20)[0]
    # uvicorn's access log shows the callback, but not its code or state
    assert f"{CALLBACK_PATH}?code=[redacted]&state=[redacted]" in output
    assert leaked(output, issued_secrets(stack.sim) | {stack.key}) == []


# ---------------------------------------------------------------------------------- rejections
@pytest.fixture
def app_server(stack: Stack) -> Iterator[Stack]:
    """The connector app in this process (real uvicorn, real HTTP) on the registered callback port."""
    with CallbackServer(create_app(Connector(stack.manager())), "127.0.0.1", stack.port):
        yield stack


def test_forged_state_is_rejected_and_the_code_is_not_spent(app_server: Stack) -> None:
    s = app_server
    code = authorize_code(s.sim, state="made-up-by-an-attacker")  # a real code, a state we never issued
    r = requests.get(f"{s.base}{CALLBACK_PATH}", params={"code": code, "state": "made-up-by-an-attacker"}, timeout=30)
    assert r.status_code == 400
    assert "Unknown or already used state" in r.text and "Nothing was stored" in r.text
    no_state = requests.get(f"{s.base}{CALLBACK_PATH}", params={"code": code}, timeout=30)
    assert no_state.status_code == 400 and "Unknown or already used state" in no_state.text
    assert s.sim.stats.code_exchanges == 0
    assert_nothing_stored(s)


def test_expired_state_is_rejected(app_server: Stack) -> None:
    s = app_server
    authorize = requests.get(f"{s.base}{ADD_PATH}", allow_redirects=False, timeout=30).headers["Location"]
    state_hash = hashlib.sha256(_state_of(authorize).encode()).hexdigest()
    wh = s.warehouse()
    with wh.engine.begin() as conn:  # the user took eleven minutes at the consent screen
        n = conn.execute(
            sa.text("UPDATE jira_oauth_states SET expires_at = :t WHERE state_hash = :h"),
            {"t": utcnow() - timedelta(minutes=1), "h": state_hash},
        ).rowcount
    assert n == 1
    wh.close()
    r = requests.get(authorize, timeout=30)
    assert r.status_code == 400
    assert "Expired state" in r.text and "10 minutes" in r.text and "Nothing was stored" in r.text
    assert s.sim.stats.code_exchanges == 0
    assert_nothing_stored(s)


def test_access_denied_is_a_403_and_its_state_is_spent(app_server: Stack) -> None:
    s = app_server
    s.sim.consent_mode = "deny"
    r = requests.get(f"{s.base}{ADD_PATH}", timeout=30)
    assert r.history and "error=access_denied" in r.url
    assert r.status_code == 403
    assert "Access was not granted" in r.text and "Nothing was stored" in r.text
    # The state of a denied flow is spent: a code later obtained under it is refused, not exchanged.
    state = parse_qs(urlsplit(r.url).query)["state"][0]
    s.sim.consent_mode = "allow"
    code = authorize_code(s.sim, state=state)
    again = requests.get(f"{s.base}{CALLBACK_PATH}", params={"code": code, "state": state}, timeout=30)
    assert again.status_code == 400 and "already used" in again.text
    assert s.sim.stats.code_exchanges == 0
    assert_nothing_stored(s)


def test_wrong_client_secret_names_the_variable_and_stores_nothing(stack: Stack) -> None:
    wrong = "wrong-secret-value"
    connector = Connector(stack.manager(client_secret=wrong))
    with CallbackServer(create_app(connector), "127.0.0.1", stack.port):
        r = requests.get(f"{stack.base}{ADD_PATH}", timeout=30)
    assert r.status_code == 400
    assert "rejected the app" in r.text and "ATLASSIAN_CLIENT_SECRET" in r.text and "Nothing was stored" in r.text
    assert wrong not in r.text and stack.sim.cfg.client_secret not in r.text
    assert stack.sim.stats.code_exchanges == 0
    assert_nothing_stored(stack)


def test_unregistered_redirect_uri_is_refused_at_authorize(stack: Stack) -> None:
    """JIRA_REDIRECT_URI that the Atlassian app does not list: the consent page refuses with a 400
    (the browser never comes back), and the connector stores nothing."""
    other_port = free_port()
    unregistered = callback_uri(other_port)
    connector = Connector(stack.manager(redirect_uri=unregistered))
    with CallbackServer(create_app(connector), "127.0.0.1", other_port):
        r = requests.get(f"http://127.0.0.1:{other_port}{ADD_PATH}", timeout=30)
    assert r.status_code == 400
    assert "redirect_uri does not match" in r.text
    assert stack.sim.stats.code_exchanges == 0
    assert_nothing_stored(stack)


def test_redirect_uri_differing_at_the_code_exchange_is_rejected(stack: Stack) -> None:
    """The code was issued for the registered callback, but the connector exchanges it claiming another
    URI (a misconfigured replica): Atlassian refuses the exchange, the page says so, nothing is stored."""
    wh = stack.warehouse()
    honest = Connector(stack.manager())
    mismatched = Connector(stack.manager(redirect_uri=callback_uri(free_port())))
    authorize = honest.start()
    with CallbackServer(create_app(mismatched), "127.0.0.1", stack.port):
        r = requests.get(authorize, timeout=30)
    assert r.status_code == 400
    assert "Exchanging the authorization code failed" in r.text and "redirect_uri does not match" in r.text
    assert "Nothing was stored" in r.text
    assert wh.list_grants() == []
    wh.close()


# ---------------------------------------------------------------------------------- health
def test_healthz_follows_the_token_store(app_server: Stack, tmp_path: Path) -> None:
    s = app_server
    r = requests.get(f"{s.base}/healthz", timeout=30)
    assert (r.status_code, r.json()) == (200, {"status": "ok"})

    url = make_url(s.warehouse_url)
    if url.get_backend_name() == "postgresql":
        drop_database(s.warehouse_url)  # the database is gone (terminates the app's pooled connections)
    else:
        db = Path(url.database or "")
        for f in db.parent.glob(db.name + "*"):
            f.unlink()
        db.mkdir()  # the path now names a directory: SQLite cannot open it
    r = requests.get(f"{s.base}/healthz", timeout=30)
    assert r.status_code == 503
    assert r.json()["status"] == "unavailable"
    if url.get_backend_name() == "sqlite":
        shutil.rmtree(Path(url.database or ""))
