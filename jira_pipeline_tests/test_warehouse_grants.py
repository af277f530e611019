"""Grant storage, the cross-process grant lock, and single-use OAuth states (SQLite and PostgreSQL)."""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jira_pipeline.warehouse import Warehouse
from jira_pipeline.warehouse.store import OAUTH_STATE_PURGE_AFTER

PROCS = 6
INCREMENTS = 30


def grant(grant_id: str = "g1", **kw: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "grant_id": grant_id,
        "client_id": "client-1",
        "account_id": "acc-1",
        "refresh_token_enc": "gAAAA-refresh-ciphertext",
        "access_token_enc": "gAAAA-access-ciphertext",
        "access_expires_at": datetime(2024, 1, 1, 13, tzinfo=UTC),
        "scopes": ["read:jira-work", "read:jira-user", "offline_access"],
        "sites": [{"id": "c1", "name": "acme", "url": "https://acme.atlassian.net"}],
    }
    row.update(kw)
    return row


@pytest.fixture
def wh(warehouse_url: str) -> Warehouse:
    w = Warehouse(warehouse_url)
    yield w
    w.close()


def test_save_get_list_delete_grant(wh: Warehouse) -> None:
    assert wh.get_grant("g1") is None and wh.list_grants() == []
    wh.save_grant(grant())
    g = wh.get_grant("g1")
    assert g is not None
    assert g["refresh_count"] == 0 and g["status"] == "active" and g["refreshed_at"] is None
    assert g["sites"][0]["url"] == "https://acme.atlassian.net"
    assert g["access_expires_at"] == datetime(2024, 1, 1, 13, tzinfo=UTC)
    assert g["created_at"].tzinfo is not None and g["updated_at"] >= g["created_at"]
    created = g["created_at"]

    wh.save_grant(grant(refresh_token_enc="rotated", status="revoked", status_reason="invalid_grant"))
    g2 = wh.get_grant("g1")
    assert g2 is not None
    assert (g2["refresh_token_enc"], g2["status"], g2["status_reason"]) == (
        "rotated",
        "revoked",
        "invalid_grant",
    )
    assert g2["created_at"] == created  # replace keeps the original creation time

    wh.save_grant(grant("g0"))
    assert [x["grant_id"] for x in wh.list_grants()] == ["g1", "g0"]
    wh.delete_grant("g1")
    assert [x["grant_id"] for x in wh.list_grants()] == ["g0"]

    with pytest.raises(ValueError, match="refresh_token_enc"):
        wh.save_grant(grant(refresh_token_enc=None))
    with pytest.raises(ValueError, match="naive"):
        wh.save_grant(grant(access_expires_at=datetime(2024, 1, 1)))


def test_lock_grant_commits_changes_and_rolls_back_on_error(wh: Warehouse) -> None:
    wh.save_grant(grant())
    before = wh.get_grant("g1")
    assert before is not None
    with wh.lock_grant("g1") as g:
        assert g is not None
        g["refresh_token_enc"] = "rotated-1"
        g["refresh_count"] += 1
        g["refreshed_at"] = datetime(2024, 1, 1, 12, 30, tzinfo=UTC)
        g["sites"].append({"id": "c2", "name": "beta", "url": "https://beta.atlassian.net"})
    after = wh.get_grant("g1")
    assert after is not None
    assert (after["refresh_token_enc"], after["refresh_count"]) == ("rotated-1", 1)
    assert [s["id"] for s in after["sites"]] == ["c1", "c2"]  # in-place mutation is detected
    assert after["updated_at"] > before["updated_at"]

    with pytest.raises(RuntimeError, match="token endpoint exploded"), wh.lock_grant("g1") as g:
        assert g is not None
        g["refresh_token_enc"] = "never-persisted"
        raise RuntimeError("token endpoint exploded")
    kept = wh.get_grant("g1")
    assert kept is not None and kept["refresh_token_enc"] == "rotated-1"

    with wh.lock_grant("g1") as g:  # unchanged dict -> no write at all
        pass
    assert wh.get_grant("g1") == kept

    with wh.lock_grant("missing") as g:
        assert g is None


def _lock_worker(url: str, grant_id: str, n: int, ready: Any, go: Any) -> None:
    w = Warehouse(url)  # all workers create the (missing) tables at the same moment
    ready.wait(60)
    if not go.wait(60):
        raise SystemExit(3)
    for _ in range(n):
        with w.lock_grant(grant_id) as g:
            assert g is not None
            value = g["refresh_count"]
            time.sleep(0.002)  # widen the read-modify-write window: without the lock, updates get lost
            g["refresh_count"] = value + 1
    w.close()


@pytest.mark.timeout(180)
def test_lock_grant_is_exclusive_across_processes(warehouse_url: str) -> None:
    ctx = mp.get_context("spawn")
    ready = ctx.Barrier(PROCS + 1)
    go = ctx.Event()
    procs = [
        ctx.Process(target=_lock_worker, args=(warehouse_url, "g1", INCREMENTS, ready, go))
        for _ in range(PROCS)
    ]
    for p in procs:
        p.start()
    try:
        ready.wait(120)
        w = Warehouse(warehouse_url, create=False)  # the workers created the tables concurrently
        w.save_grant(grant())
        go.set()
        for p in procs:
            p.join(150)
        assert [p.exitcode for p in procs] == [0] * PROCS
        g = w.get_grant("g1")
        assert g is not None and g["refresh_count"] == PROCS * INCREMENTS
        w.close()
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()


def test_oauth_state_single_use_under_concurrency(wh: Warehouse) -> None:
    soon = datetime.now(UTC) + timedelta(minutes=10)
    threads = 8
    for n in range(5):
        wh.put_oauth_state(f"hash-{n}", soon, {"return_to": "/", "n": n})
        barrier = threading.Barrier(threads)

        def consume(_: int, h: str = f"hash-{n}", b: threading.Barrier = barrier) -> dict[str, Any] | None:
            b.wait(10)
            return wh.consume_oauth_state(h)

        with ThreadPoolExecutor(threads) as ex:
            results = list(ex.map(consume, range(threads)))
        winners = [r for r in results if r is not None]
        assert len(winners) == 1, results
        assert winners[0]["payload"] == {"return_to": "/", "n": n}
        assert winners[0]["expires_at"] == soon.replace(microsecond=soon.microsecond)
    assert wh.consume_oauth_state("never-issued") is None


def test_expired_states_are_returned_once_then_purged(wh: Warehouse) -> None:
    now = datetime.now(UTC)
    wh.put_oauth_state("long-gone", now - OAUTH_STATE_PURGE_AFTER - timedelta(minutes=1))
    wh.put_oauth_state("old-1", now - timedelta(minutes=1))
    wh.put_oauth_state("old-2", now - timedelta(minutes=1))
    got = wh.consume_oauth_state("old-1")
    assert got is not None and got["expires_at"] < datetime.now(UTC)  # the caller says "expired"
    assert wh.consume_oauth_state("old-1") is None
    assert wh.consume_oauth_state("long-gone") is None  # purged on the way
    assert wh.consume_oauth_state("old-2") is not None
    assert wh.scalar("SELECT count(*) FROM jira_oauth_states") == 0
