"""The grant keep-alive Dagster job (`jira_grant_keepalive_job`), run in process on an ephemeral
instance with only environment variables pointing at the simulator and the test store: it refreshes
every grant, warns 30 days before Atlassian's 365-day limit, fails with the reconsent remedy once a
grant is revoked, and no token or secret reaches the run's event log, metadata or config.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from dagster import DagsterInstance
from dagster._serdes import serialize_value

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
    small_simulator,
)
from jira_pipeline_tests.simulator import Simulator


@pytest.fixture
def sim(warehouse_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Simulator]:
    redirect_uri = callback_uri(free_port())
    s = small_simulator(redirect_uri)
    key = generate_key()
    for name, value in pipeline_env(s, redirect_uri, warehouse_url, key, str(tmp_path / "parquet")).items():
        monkeypatch.setenv(name, value)
    try:
        yield s
        assert s.errors == []
    finally:
        s.stop()


def _run_text(instance: DagsterInstance, run_id: str) -> str:
    """Everything Dagster recorded about a run: each event record, and the run (config, tags)."""
    records = [serialize_value(entry) for entry in instance.all_logs(run_id)]
    return "\n".join([*records, serialize_value(instance.get_run_by_id(run_id))])


def test_keepalive_refreshes_warns_before_365_days_and_fails_with_the_remedy(
    sim: Simulator, warehouse_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jira_pipeline.definitions import defs

    key = os.environ["JIRA_TOKEN_ENCRYPTION_KEY"]
    wh = Warehouse(warehouse_url)
    manager = GrantManager(wh, oauth_config(sim, os.environ["JIRA_REDIRECT_URI"]), TokenCipher(key))
    # Two grants with their own refresh tokens: a consent moved to another id and dated 340 days back
    # (25 days before Atlassian's 365-day limit), and a fresh consent.
    young = connect_headless(Connector(manager)).grant_id
    first = wh.get_grant(young)
    assert first is not None
    old = "old-grant"
    wh.save_grant({**first, "grant_id": old, "account_id": old, "created_at": utcnow() - timedelta(days=340)})
    wh.delete_grant(young)
    assert connect_headless(Connector(manager)).grant_id == young

    job = defs.resolve_job_def("jira_grant_keepalive_job")
    sim.reset_stats()
    with DagsterInstance.ephemeral() as instance:
        ok = job.execute_in_process(instance=instance, raise_on_error=False)
        assert ok.success
        assert sim.stats.token_refreshes == 2 and sim.stats.revoked_grants == 0
        assert {g["grant_id"]: g["refresh_count"] for g in wh.list_grants()} == {young: 1, old: 1}
        warnings = [
            e.user_message
            for e in instance.all_logs(ok.run_id)
            if e.level == logging.WARNING and "365-day" in e.user_message
        ]
        assert len(warnings) == 1 and old in warnings[0] and "jira-pipeline connect" in warnings[0]
        texts = [_run_text(instance, ok.run_id)]

        sim.revoke_all_grants()
        failed = job.execute_in_process(instance=instance, raise_on_error=False)
        assert not failed.success
        failures = [e for e in failed.all_events if e.is_step_failure]
        assert failures
        message = failures[0].step_failure_data.error.message  # type: ignore[union-attr]
        assert "jira-pipeline connect" in message and young in message and old in message
        assert {g["status"] for g in wh.list_grants()} == {"revoked"}
        texts.append(_run_text(instance, failed.run_id))

    secrets = issued_secrets(sim) | {key}
    assert len(secrets) > 6
    for text in texts:
        assert "refresh_all_grants" in text and young in text  # the records were read
        assert leaked(text, secrets) == []
        for g in wh.list_grants():  # not even the ciphertext
            assert g["refresh_token_enc"] not in text and g["access_token_enc"] not in text
    wh.close()
