"""GrantManager against the simulator, on SQLite and PostgreSQL: what happens to a stored grant when
Atlassian revokes it, answers a refresh too late, or omits the rotated refresh token; and that
tokens are unreadable at rest and never show up in logs or exception text.
"""

from __future__ import annotations

import logging
import stat
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from jira_pipeline.atlassian import streams
from jira_pipeline.atlassian.client import JiraClient
from jira_pipeline.atlassian.oauth import AmbiguousRefresh, InvalidClient, ReconsentRequired
from jira_pipeline.connect.app import Connector
from jira_pipeline.crypto import TokenCipher, generate_key, resolve_cipher
from jira_pipeline.grants import GrantManager, utcnow
from jira_pipeline.settings import ConfigError
from jira_pipeline.warehouse.store import Warehouse
from jira_pipeline_tests.rotation_race import (
    callback_uri,
    connect_headless,
    free_port,
    issued_secrets,
    leaked,
    oauth_config,
    reset_simulator,
    small_simulator,
)
from jira_pipeline_tests.simulator import Simulator


@dataclass
class Connected:
    sim: Simulator
    warehouse: Warehouse
    manager: GrantManager
    key: str
    grant_id: str
    cloud_id: str

    def manager_with(self, **kw: object) -> GrantManager:
        """Another process's view: its own GrantManager on the same store and key."""
        return GrantManager(self.warehouse, self.manager.oauth, TokenCipher(self.key), **kw)  # type: ignore[arg-type]

    def stale(self) -> None:
        """Make the stored access token look expired, so the next use refreshes."""
        with self.warehouse.lock_grant(self.grant_id) as row:
            assert row is not None
            row["access_expires_at"] = utcnow() - timedelta(seconds=1)

    def row(self) -> dict:
        row = self.warehouse.get_grant(self.grant_id)
        assert row is not None
        return row

    def stored_refresh_token(self) -> str:
        return self.manager.cipher.decrypt(self.row()["refresh_token_enc"])

    def myself(self, manager: GrantManager | None = None) -> dict:
        m = manager or self.manager
        with JiraClient(m.oauth.api_url, self.cloud_id, m.provider(self.grant_id), max_retries=1) as client:
            return streams.myself(client)

    def attempts(self) -> int:
        """Refresh requests the token endpoint answered (successful or refused)."""
        return self.sim.stats.token_refreshes + self.sim.stats.refresh_failures


@pytest.fixture(scope="module")
def module_sim() -> Iterator[Simulator]:
    sim = small_simulator(callback_uri(free_port()))
    yield sim
    sim.stop()


@pytest.fixture
def connected(module_sim: Simulator, warehouse_url: str) -> Iterator[Connected]:
    sim = module_sim
    reset_simulator(sim)
    warehouse = Warehouse(warehouse_url)
    key = generate_key()
    manager = GrantManager(warehouse, oauth_config(sim), TokenCipher(key))
    result = connect_headless(Connector(manager))
    try:
        yield Connected(sim, warehouse, manager, key, result.grant_id, result.sites[0]["id"])
        assert sim.errors == []
    finally:
        warehouse.close()


def test_connect_stores_the_grant_encrypted(connected: Connected) -> None:
    c = connected
    row = c.row()
    assert row["status"] == "active"
    assert [s["id"] for s in row["sites"]] == [s.cloud_id for s in c.sim.sites]
    assert set(row["scopes"]) >= {"read:jira-work", "read:jira-user", "offline_access"}
    (sim_grant,) = c.sim.auth.live_grants()
    assert c.stored_refresh_token() == sim_grant.current
    assert c.myself()["accountId"] == c.grant_id


def test_tokens_are_unreadable_in_the_database_without_the_key(connected: Connected) -> None:
    c = connected
    c.stale()
    c.manager.access_token(c.grant_id)  # one rotation, so old and new tokens both exist
    assert c.sim.stats.token_refreshes == 1
    secrets = issued_secrets(c.sim) - {c.sim.cfg.client_secret}
    assert len(secrets) >= 4  # 2 access + 2 refresh tokens (+ the code)
    with c.warehouse.engine.connect() as conn:
        for table in ("jira_oauth_grants", "jira_oauth_states"):
            for raw in conn.execute(sa.text(f"SELECT * FROM {table}")).mappings():
                text = " ".join(str(v) for v in raw.values())
                assert leaked(text, secrets | {c.key, c.sim.cfg.client_secret}) == [], table
    row = c.row()
    assert row["refresh_token_enc"].startswith("gAAAA") and row["access_token_enc"].startswith("gAAAA")

    with pytest.raises(ConfigError) as wrong_key:
        TokenCipher(generate_key()).decrypt(row["refresh_token_enc"])
    message = str(wrong_key.value)
    assert "JIRA_TOKEN_ENCRYPTION_KEY" in message and "jira-pipeline connect" in message
    # Through the manager, as a run with the wrong key would meet it: the same clear error, no token.
    with pytest.raises(ConfigError) as via_manager:
        GrantManager(c.warehouse, c.manager.oauth, TokenCipher(generate_key())).access_token(c.grant_id)
    assert "cannot be decrypted" in str(via_manager.value)
    assert leaked(str(via_manager.value) + repr(via_manager.value), issued_secrets(c.sim)) == []


def test_revoked_grant_means_reconsent_and_is_marked_in_the_store(connected: Connected) -> None:
    c = connected
    assert c.sim.revoke_all_grants() == 1
    c.stale()
    with pytest.raises(ReconsentRequired) as first:
        c.manager.access_token(c.grant_id)
    assert "jira-pipeline connect" in str(first.value)
    row = c.row()
    assert row["status"] == "revoked" and "invalid_grant" in row["status_reason"]

    # Every later use fails fast from the store, with the remedy, without presenting the dead token again.
    attempts = c.attempts()
    other_process = c.manager_with()
    for call in (lambda: other_process.access_token(c.grant_id), lambda: c.myself(other_process)):
        with pytest.raises(ReconsentRequired) as later:
            call()
        assert "jira-pipeline connect" in str(later.value) and "revoked" in str(later.value)
    assert c.attempts() == attempts
    assert [r["ok"] for r in c.manager.refresh_all()] == [False]
    assert c.attempts() == attempts
    for exc in (first.value, later.value):
        assert leaked(str(exc) + repr(exc), issued_secrets(c.sim)) == []


def test_refresh_timeout_is_not_replayed_and_the_next_refresh_within_the_leeway_works(
    connected: Connected,
) -> None:
    c = connected
    old_refresh = c.stored_refresh_token()
    c.stale()
    c.sim.reset_stats()
    impatient = c.manager_with(refresh_timeout=0.3)
    c.sim.refresh_hang_seconds = 0.8  # the simulator rotates, then answers after our read timeout
    started = time.monotonic()
    with pytest.raises(AmbiguousRefresh) as ambiguous:
        impatient.access_token(c.grant_id)
    assert time.monotonic() - started < 0.75  # gave up at the timeout, did not wait for (or retry) the answer
    message = str(ambiguous.value)
    assert "not retried" in message and "jira-pipeline connect" in message
    assert leaked(message + repr(ambiguous.value), issued_secrets(c.sim)) == []
    time.sleep(0.7)  # let the hanging answer go out
    assert c.attempts() == 1 and impatient.refresh_calls == 1  # exactly one attempt: no replay
    # The store still holds the pair it had; the simulator already rotated past it.
    assert c.stored_refresh_token() == old_refresh and c.row()["status"] == "active"
    (sim_grant,) = c.sim.auth.live_grants()
    assert sim_grant.current != old_refresh

    # A later run, within Atlassian's leeway, refreshes with the stored token and recovers.
    c.sim.refresh_hang_seconds = 0
    token = c.manager_with().access_token(c.grant_id)
    assert c.sim.stats.token_refreshes == 2 and c.sim.stats.revoked_grants == 0
    assert c.stored_refresh_token() != old_refresh
    assert c.myself()["accountId"] == c.grant_id
    assert token in c.sim.auth.access_tokens


def test_refresh_answer_without_refresh_token_keeps_the_old_one(connected: Connected) -> None:
    c = connected
    old_refresh = c.stored_refresh_token()
    old_access = c.manager.access_token(c.grant_id)
    c.sim.refresh_omit_refresh_token = True
    c.stale()
    new_access = c.manager.access_token(c.grant_id)
    assert new_access != old_access
    assert c.stored_refresh_token() == old_refresh
    assert c.row()["refresh_count"] == 1
    c.sim.refresh_omit_refresh_token = False
    c.manager.refresh(c.grant_id, force=True)  # the kept token is still the current one: it works
    assert c.stored_refresh_token() != old_refresh
    assert c.sim.stats.revoked_grants == 0 and c.sim.stats.token_refreshes == 2


def test_401_refreshes_once_and_shares_the_new_token(connected: Connected) -> None:
    """A token Jira rejects is replaced once; a second caller holding the same rejected token gets
    the replacement instead of a second refresh (what concurrent 401s in several steps do)."""
    c = connected
    rejected = c.manager.access_token(c.grant_id)
    first = c.manager.refresh(c.grant_id, force=True, rejected=rejected)
    second = c.manager_with().refresh(c.grant_id, force=True, rejected=rejected)
    assert first == second != rejected
    assert c.sim.stats.token_refreshes == 1


def test_no_token_or_secret_in_logs_or_errors(connected: Connected, caplog: pytest.LogCaptureFixture) -> None:
    """Everything that talks about tokens at DEBUG: refresh, 401 healing, wrong secret, timeout, revocation."""
    c = connected
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    connect_headless(Connector(c.manager))  # a second consent (same user: replaces the grant)
    c.stale()
    c.myself()
    c.manager.refresh(c.grant_id, force=True)
    wrong_secret = GrantManager(c.warehouse, oauth_config(c.sim, client_secret="not-the-secret"), TokenCipher(c.key))
    for call, kind in (
        (lambda: wrong_secret.refresh(c.grant_id, force=True), InvalidClient),
        (lambda: c.manager_with(refresh_timeout=0.3).refresh(c.grant_id, force=True), AmbiguousRefresh),
    ):
        if kind is AmbiguousRefresh:
            c.sim.refresh_hang_seconds = 0.5
        with pytest.raises(kind) as exc:
            call()
        errors.append(exc.value)
    c.sim.refresh_hang_seconds = 0
    time.sleep(0.3)
    c.sim.revoke_all_grants()
    with pytest.raises(ReconsentRequired) as revoked:
        c.manager.refresh(c.grant_id, force=True)
    errors.append(revoked.value)
    assert "ATLASSIAN_CLIENT_SECRET" in str(errors[0])

    secrets = issued_secrets(c.sim) | {c.key, "not-the-secret"}
    assert len(secrets) > 8
    text = caplog.text + "".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records)
    assert "Refreshed the Atlassian access token" in text  # the logs were captured
    assert leaked(text, secrets) == []
    for exc in errors:
        assert leaked(f"{exc} {exc!r} {exc.__context__!r} {exc.__cause__!r}", secrets) == []
    for obj in (c.manager, c.manager.oauth, c.manager.cipher, c.manager.provider(c.grant_id), c.warehouse):
        assert leaked(repr(obj), secrets) == []


# ---------------------------------------------------------------------------------- the key
def test_embedded_store_generates_one_private_key_even_when_processes_start_together(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path / 'data' / 'warehouse.db'}"
    caplog.set_level(logging.WARNING, logger="jira_pipeline.crypto")
    with ThreadPoolExecutor(8) as pool:  # eight step processes starting on a fresh install
        ciphers = list(pool.map(lambda _: resolve_cipher(url, None), range(8)))
    key_file = tmp_path / "data" / "warehouse.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert [p.name for p in key_file.parent.iterdir()] == ["warehouse.key"]  # no temporary files left
    token = ciphers[0].encrypt("a-token")
    assert {c.decrypt(token) for c in ciphers} == {"a-token"}  # all share one key
    assert resolve_cipher(url, None).decrypt(token) == "a-token"  # and later runs read it again
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "JIRA_TOKEN_ENCRYPTION_KEY" in warnings[0]
    assert key_file.read_text().strip() not in caplog.text


def test_key_is_required_off_the_embedded_store_and_must_be_valid() -> None:
    pg_url = "postgresql+psycopg://jira:pw@127.0.0.1:5432/warehouse"  # never connected to: no key, no start
    with pytest.raises(ConfigError, match=r"JIRA_TOKEN_ENCRYPTION_KEY is required.*keygen"):
        resolve_cipher(pg_url, None)
    with pytest.raises(ConfigError, match=r"not a valid Fernet key.*keygen"):
        resolve_cipher(pg_url, "not-a-key")
    key = generate_key()
    assert key not in repr(resolve_cipher(pg_url, key))
