"""JiraClient unit tests: retries, rate limits, 401 refresh, error mapping, pagination styles and
bounded concurrency. `responses` stubs answers; transport failures (dropped connections, read
timeouts, truncated bodies) use a real scripted HTTP server on 127.0.0.1."""

from __future__ import annotations

import email.utils
import json
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
import responses
from responses import matchers

from jira_pipeline.atlassian import JiraApiError, JiraClient

API = "https://api.example.test"
CLOUD = "cloud-123"
BASE = f"{API}/ex/jira/{CLOUD}/rest/api/3"
TOKEN_1 = "tok-first-0123456789"
TOKEN_2 = "tok-second-9876543210"


class FakeTime:
    """Injected sleep + monotonic clock: retry schedules run instantly and are recorded."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds

    def monotonic(self) -> float:
        with self._lock:
            return self.now


class Tokens:
    """A TokenProvider double that records what the client asked for."""

    def __init__(self, token: str = TOKEN_1, refreshed: str = TOKEN_2) -> None:
        self.token = token
        self.refreshed = refreshed
        self.calls = 0
        self.rejected: list[str] = []
        self._lock = threading.Lock()

    def access_token(self) -> str:
        with self._lock:
            self.calls += 1
            return self.token

    def refresh_after_401(self, rejected: str) -> str:
        with self._lock:
            self.rejected.append(rejected)
            self.token = self.refreshed
            return self.token


def make_client(
    ft: FakeTime | None = None, tokens: Tokens | None = None, api: str = API, **kw: Any
) -> JiraClient:
    ft = ft or FakeTime()
    return JiraClient(
        api, CLOUD, tokens or Tokens(), sleep=ft.sleep, clock=ft.monotonic, rng=random.Random(7), **kw
    )


def auth_of(call: Any) -> str:
    return call.request.headers["Authorization"]


# ------------------------------------------------------------------------------------- basics


def test_base_url_is_the_gateway_path() -> None:
    assert make_client().base_url == f"{API}/ex/jira/{CLOUD}/rest/api/3"
    assert make_client(api=API + "/").base_url == f"{API}/ex/jira/{CLOUD}/rest/api/3"


def test_pool_is_at_least_max_concurrency() -> None:
    client = make_client(max_concurrency=24)
    adapter = client.session.get_adapter("https://x")
    assert adapter._pool_maxsize >= 24  # type: ignore[attr-defined]


@responses.activate
def test_get_sends_bearer_from_provider_each_request() -> None:
    responses.get(f"{BASE}/myself", json={"accountId": "a1", "timeZone": "UTC"})
    tokens = Tokens()
    client = make_client(tokens=tokens)
    assert client.get("myself")["accountId"] == "a1"
    assert client.get("/myself")["timeZone"] == "UTC"
    assert [auth_of(c) for c in responses.calls] == [f"Bearer {TOKEN_1}"] * 2
    assert tokens.calls == 2
    assert client.stats.requests == 2 and client.stats.retries == 0


# ------------------------------------------------------------------------------- rate limits


@responses.activate
def test_429_retry_after_seconds_is_honoured(caplog: pytest.LogCaptureFixture) -> None:
    responses.get(
        f"{BASE}/field", status=429, headers={"Retry-After": "7", "RateLimit-Reason": "jira-burst-based"}
    )
    responses.get(f"{BASE}/field", json=[{"id": "summary"}])
    ft = FakeTime()
    client = make_client(ft)
    with caplog.at_level(logging.WARNING):
        assert client.get("field") == [{"id": "summary"}]
    assert len(ft.sleeps) == 1 and 7 <= ft.sleeps[0] <= 8
    assert client.stats.throttled == 1 and client.stats.retries == 1 and client.stats.requests == 2
    [rec] = [r for r in caplog.records if r.levelno == logging.WARNING]
    msg = rec.getMessage()
    assert "GET field" in msg and "429" in msg and "jira-burst-based" in msg and "1/8" in msg and "7." in msg
    assert TOKEN_1 not in msg and "Bearer" not in msg


@responses.activate
def test_retry_after_http_date_and_cap() -> None:
    when = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=20), usegmt=True)
    responses.get(f"{BASE}/field", status=503, headers={"Retry-After": when})
    responses.get(f"{BASE}/field", status=429, headers={"Retry-After": "86400"})
    responses.get(f"{BASE}/field", json=[])
    ft = FakeTime()
    client = make_client(ft, retry_after_max=120)
    assert client.get("field") == []
    assert 17 <= ft.sleeps[0] <= 22
    assert 120 <= ft.sleeps[1] <= 121  # capped
    assert client.stats.server_errors == 1 and client.stats.throttled == 1


@responses.activate
def test_x_ratelimit_reset_used_without_retry_after() -> None:
    reset = (datetime.now(UTC) + timedelta(seconds=30)).isoformat().replace("+00:00", "Z")
    responses.get(f"{BASE}/field", status=429, headers={"X-RateLimit-Reset": reset})
    responses.get(f"{BASE}/field", json=[])
    ft = FakeTime()
    make_client(ft).get("field")
    assert 27 <= ft.sleeps[0] <= 32


@responses.activate
def test_retry_after_pauses_other_threads_too() -> None:
    """After a Retry-After, a request from another thread waits for the window instead of sending."""
    responses.get(f"{BASE}/a", status=429, headers={"Retry-After": "10"})
    responses.get(f"{BASE}/a", json={})
    responses.get(f"{BASE}/b", json={})
    ft = FakeTime()
    client = make_client(ft)
    client._pause_all(10)  # as the 429 handler does
    client.get("b")
    assert ft.sleeps and 9.9 <= ft.sleeps[0] <= 10


# ---------------------------------------------------------------------------------- 5xx / errors


@responses.activate
def test_5xx_retried_with_backoff_then_success() -> None:
    for status in (500, 502, 504):
        responses.post(f"{BASE}/search/jql", status=status, body="oops")
    responses.post(f"{BASE}/search/jql", json={"issues": [], "isLast": True})
    ft = FakeTime()
    client = make_client(ft, backoff_base=0.5, backoff_max=30)
    assert client.post("search/jql", {"jql": "updated >= -1d"}) == {"issues": [], "isLast": True}
    assert client.stats.server_errors == 3 and client.stats.retries == 3 and client.stats.requests == 4
    # full jitter: each wait within [0, base * 2**attempt]
    for attempt, wait in enumerate(ft.sleeps):
        assert 0 <= wait <= 0.5 * 2**attempt
    # every retry re-sent the same JSON body
    assert all(json.loads(c.request.body) == {"jql": "updated >= -1d"} for c in responses.calls)


@responses.activate
def test_retries_exhausted_raises_with_last_reason() -> None:
    responses.get(f"{BASE}/field", status=502, json={"message": "bad gateway"})
    ft = FakeTime()
    client = make_client(ft, max_retries=3, backoff_base=1, backoff_max=3)
    with pytest.raises(JiraApiError) as info:
        client.get("field")
    err = info.value
    assert err.status == 502 and err.retryable and err.method == "GET" and err.path == "field"
    assert "4 attempts" in str(err) and "bad gateway" in str(err)
    assert len(responses.calls) == 4 and len(ft.sleeps) == 3
    assert all(w <= 3 for w in ft.sleeps)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            400,
            {"errorMessages": ["Error in the JQL Query: 'updatd' is not a field."], "errors": {}},
            "updatd",
        ),
        (
            404,
            {"errorMessages": [], "errors": {"issueIdsOrKeys": "Issue does not exist"}},
            "Issue does not exist",
        ),
        (403, {"message": "You don't have permission"}, "You don't have permission"),
        (
            410,
            {"errorMessages": ["The requested API has been removed. Please migrate to /search/jql"]},
            "migrate to /search/jql",
        ),
    ],
)
@responses.activate
def test_client_errors_fail_fast_with_jira_message_and_path(
    status: int, body: dict[str, Any], expected: str
) -> None:
    responses.post(f"{BASE}/search/jql", status=status, json=body)
    ft = FakeTime()
    client = make_client(ft)
    with pytest.raises(JiraApiError) as info:
        client.post("search/jql", {"jql": "x"})
    err = info.value
    assert err.status == status and err.path == "search/jql" and err.method == "POST"
    assert expected in str(err) and "POST search/jql" in str(err) and f"HTTP {status}" in str(err)
    assert len(responses.calls) == 1 and ft.sleeps == [] and not err.retryable
    assert TOKEN_1 not in str(err) and TOKEN_1 not in repr(err)


@responses.activate
def test_malformed_json_on_200_is_an_error_with_snippet() -> None:
    responses.get(f"{BASE}/myself", body='{"accountId": "a1", "timeZo', content_type="application/json")
    with pytest.raises(JiraApiError, match="malformed JSON") as info:
        make_client().get("myself")
    assert "accountId" in str(info.value) and info.value.path == "myself"


# ------------------------------------------------------------------------------------ 401 refresh


@responses.activate
def test_401_refreshes_once_then_succeeds() -> None:
    responses.get(
        f"{BASE}/myself",
        status=401,
        json={"message": "Unauthorized; scope does not match"},
        match=[matchers.header_matcher({"Authorization": f"Bearer {TOKEN_1}"})],
    )
    responses.get(
        f"{BASE}/myself",
        json={"accountId": "a1"},
        match=[matchers.header_matcher({"Authorization": f"Bearer {TOKEN_2}"})],
    )
    tokens = Tokens()
    client = make_client(tokens=tokens)
    assert client.get("myself") == {"accountId": "a1"}
    assert tokens.rejected == [TOKEN_1]
    assert client.stats.refreshes_after_401 == 1 and client.stats.retries == 0


@responses.activate
def test_second_401_is_fatal_and_refreshes_only_once() -> None:
    responses.get(f"{BASE}/myself", status=401, json={"message": "Unauthorized"})
    tokens = Tokens()
    with pytest.raises(JiraApiError) as info:
        make_client(tokens=tokens).get("myself")
    assert info.value.status == 401 and "Unauthorized" in str(info.value)
    assert tokens.rejected == [TOKEN_1] and len(responses.calls) == 2
    assert TOKEN_1 not in str(info.value) and TOKEN_2 not in str(info.value)


# ------------------------------------------------------------------- real transport failures


class ScriptedServer:
    """Real HTTP server on 127.0.0.1 whose answers follow a script (one action per request);
    when the script is empty it answers `default`. Tracks peak concurrency."""

    def __init__(self, default: Any = None) -> None:
        self.script: deque[tuple[Any, ...]] = deque()
        self.default = default
        self.paths: list[str] = []
        self.active = 0
        self.peak = 0
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                with outer.lock:
                    outer.paths.append(self.path)
                    action = outer.script.popleft() if outer.script else ("json", 200, outer.default)
                    outer.active += 1
                    outer.peak = max(outer.peak, outer.active)
                try:
                    kind = action[0]
                    if kind == "drop":
                        self.close_connection = True
                        self.connection.shutdown(2)
                        return
                    if kind == "sleep":
                        time.sleep(action[1])
                        action = ("json", 200, action[2])
                        kind = "json"
                    if kind == "truncate":
                        body = json.dumps(action[1]).encode()
                        self.send_response(200)
                        self.send_header("Content-Type", "application/json")
                        self.send_header("Content-Length", str(len(body)))
                        self.end_headers()
                        self.wfile.write(body[: len(body) // 2])
                        self.wfile.flush()
                        self.close_connection = True
                        self.connection.shutdown(2)
                        return
                    body = json.dumps(action[2]).encode()
                    self.send_response(action[1])
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                finally:
                    with outer.lock:
                        outer.active -= 1

            do_GET = _handle
            do_POST = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    srv = ScriptedServer(default={"ok": True})
    try:
        yield srv
    finally:
        srv.close()


def test_dropped_connection_is_retried(server: ScriptedServer) -> None:
    server.script.extend([("drop",), ("drop",)])
    ft = FakeTime()
    client = make_client(ft, api=server.url)
    assert client.get("myself") == {"ok": True}
    assert client.stats.connection_errors == 2 and client.stats.retries == 2
    assert len(server.paths) == 3


def test_truncated_body_is_retried(server: ScriptedServer) -> None:
    server.script.append(("truncate", {"values": list(range(100))}))
    client = make_client(FakeTime(), api=server.url)
    assert client.get("field") == {"ok": True}
    assert client.stats.connection_errors == 1


def test_read_timeout_is_retried(server: ScriptedServer) -> None:
    server.script.append(("sleep", 0.6, {"late": True}))
    client = make_client(FakeTime(), api=server.url, timeout=(2, 0.2))
    assert client.get("myself") == {"ok": True}
    assert client.stats.connection_errors == 1


def test_connection_errors_exhaust_retries() -> None:
    srv = ScriptedServer()
    url = srv.url
    srv.close()  # port now refuses connections
    ft = FakeTime()
    client = make_client(ft, api=url, max_retries=2)
    with pytest.raises(JiraApiError) as info:
        client.get("myself")
    assert info.value.status is None and info.value.retryable and "ConnectionError" in str(info.value)
    assert client.stats.connection_errors == 3 and len(ft.sleeps) == 2


def test_requests_on_the_wire_never_exceed_max_concurrency(server: ScriptedServer) -> None:
    server.script.extend([("sleep", 0.05, {"n": i}) for i in range(24)])
    client = make_client(FakeTime(), api=server.url, max_concurrency=3)
    # 8 worker threads, but the client lets only 3 requests out at once
    results = list(client.map_concurrent(lambda i: client.get(f"issue/{i}"), range(24), max_workers=8))
    assert len(results) == 24
    assert server.peak <= 3


# -------------------------------------------------------------------------------------- paginate


@responses.activate
def test_paginate_offset_style_until_is_last() -> None:
    responses.get(
        f"{BASE}/project/search",
        json={"values": [{"id": "1"}, {"id": "2"}], "isLast": False, "startAt": 0, "maxResults": 2},
        match=[matchers.query_param_matcher({"startAt": "0", "maxResults": "2"})],
    )
    responses.get(
        f"{BASE}/project/search",
        json={"values": [{"id": "3"}], "isLast": True},
        match=[matchers.query_param_matcher({"startAt": "2", "maxResults": "2"})],
    )
    pages = list(make_client().paginate("project/search", style="offset", page_size=2))
    assert [[v["id"] for v in p.items] for p in pages] == [["1", "2"], ["3"]]


@responses.activate
def test_paginate_offset_style_falls_back_to_total() -> None:
    responses.get(f"{BASE}/x", json={"values": [1, 2], "total": 3, "startAt": 0})
    responses.get(f"{BASE}/x", json={"values": [3], "total": 3, "startAt": 2})
    assert [p.items for p in make_client().paginate("x", style="offset")] == [[1, 2], [3]]
    assert len(responses.calls) == 2


@responses.activate
def test_paginate_bare_array_until_empty_even_if_short() -> None:
    """Jira may cap maxResults silently; a short page is not the end, an empty page is."""
    responses.get(
        f"{BASE}/users/search",
        json=[{"accountId": "a"}, {"accountId": "b"}],
        match=[matchers.query_param_matcher({"startAt": "0", "maxResults": "1000"})],
    )
    responses.get(
        f"{BASE}/users/search",
        json=[{"accountId": "c"}],
        match=[matchers.query_param_matcher({"startAt": "2", "maxResults": "1000"})],
    )
    responses.get(
        f"{BASE}/users/search",
        json=[],
        match=[matchers.query_param_matcher({"startAt": "3", "maxResults": "1000"})],
    )
    pages = list(make_client().paginate("users/search", style="array", page_size=1000))
    assert [len(p.items) for p in pages] == [2, 1, 0]


@responses.activate
def test_paginate_bare_array_stop_on_short() -> None:
    responses.get(f"{BASE}/users/search", json=[{"accountId": "a"}])
    pages = list(make_client().paginate("users/search", style="array", page_size=2, stop_on_short=True))
    assert len(pages) == 1 and len(responses.calls) == 1


@responses.activate
def test_paginate_token_style_post_puts_token_in_body() -> None:
    responses.post(
        f"{BASE}/search/jql",
        json={"issues": [{"id": "1"}], "nextPageToken": "T1", "isLast": False},
        match=[matchers.json_params_matcher({"jql": "q", "fields": ["id"], "maxResults": 5000})],
    )
    responses.post(
        f"{BASE}/search/jql",
        json={"issues": [{"id": "2"}], "isLast": True},
        match=[
            matchers.json_params_matcher(
                {"jql": "q", "fields": ["id"], "maxResults": 5000, "nextPageToken": "T1"}
            )
        ],
    )
    pages = list(
        make_client().paginate(
            "search/jql",
            style="token",
            method="POST",
            json={"jql": "q", "fields": ["id"]},
            items_key="issues",
            page_size=5000,
        )
    )
    assert [p.items for p in pages] == [[{"id": "1"}], [{"id": "2"}]]


@responses.activate
def test_paginate_token_style_get_and_loop_guard() -> None:
    responses.get(f"{BASE}/search/jql", json={"issues": [{"id": "1"}], "nextPageToken": "T", "isLast": False})
    with pytest.raises(JiraApiError, match="repeated a nextPageToken"):
        list(make_client().paginate("search/jql", style="token", params={"jql": "q"}, items_key="issues"))


@responses.activate
def test_paginate_links_rebuilds_site_host_on_gateway() -> None:
    site_next = "https://acme.atlassian.net/rest/api/3/worklog/updated?since=1700000000500&expand="
    responses.get(
        f"{BASE}/worklog/updated",
        json={
            "values": [{"worklogId": 1}],
            "lastPage": False,
            "nextPage": site_next,
            "since": 1,
            "until": 1700000000500,
        },
        match=[matchers.query_param_matcher({"since": "1"})],
    )
    responses.get(
        f"{BASE}/worklog/updated",
        json={"values": [{"worklogId": 2}], "lastPage": True, "since": 1700000000500, "until": 9},
        match=[matchers.query_param_matcher({"since": "1700000000500", "expand": ""})],
    )
    client = make_client()
    pages = list(client.paginate("worklog/updated", style="links", params={"since": 1}))
    assert [p.body["values"][0]["worklogId"] for p in pages] == [1, 2]
    assert responses.calls[1].request.url == f"{BASE}/worklog/updated?since=1700000000500&expand="
    assert all("atlassian.net" not in c.request.url for c in responses.calls)


def test_rebuild_link_variants() -> None:
    client = make_client()
    assert client.rebuild_link("https://x.atlassian.net/rest/api/3/worklog/deleted?since=5") == (
        f"{BASE}/worklog/deleted?since=5"
    )
    # the spec's own examples use an odd prefix: keep our path, take the query
    assert (
        client.rebuild_link(
            "https://x.atlassian.net/api/~ver~/worklog/updated?since=7", fallback_path="worklog/updated"
        )
        == f"{BASE}/worklog/updated?since=7"
    )
    with pytest.raises(ValueError):
        client.rebuild_link("https://x.atlassian.net/elsewhere")


# ------------------------------------------------------------------------------- map_concurrent


def test_map_concurrent_keeps_order_and_bounds_in_flight() -> None:
    client = make_client(max_concurrency=4)
    lock = threading.Lock()
    state = {"running": 0, "peak": 0, "pulled": 0}

    def source() -> Iterator[int]:
        for i in range(60):
            with lock:
                state["pulled"] += 1
            yield i

    def work(i: int) -> int:
        with lock:
            state["running"] += 1
            state["peak"] = max(state["peak"], state["running"])
        time.sleep(random.uniform(0, 0.01))
        with lock:
            state["running"] -= 1
        return i * i

    gen = client.map_concurrent(work, source(), max_workers=3)
    first = [next(gen) for _ in range(5)]
    # streaming: only a bounded window has been pulled from the source so far
    assert state["pulled"] <= 5 + 2 * 3
    rest = list(gen)
    assert first + rest == [i * i for i in range(60)]
    assert state["peak"] <= 3


def test_map_concurrent_propagates_first_exception_and_stops() -> None:
    client = make_client()
    done: list[int] = []

    def work(i: int) -> int:
        if i == 5:
            raise JiraApiError(404, "POST", "issue/bulkfetch", "boom")
        time.sleep(0.001)
        done.append(i)
        return i

    out: list[int] = []
    with pytest.raises(JiraApiError, match="boom"):
        for r in client.map_concurrent(work, range(10_000), max_workers=4):
            out.append(r)
    assert out == [0, 1, 2, 3, 4]
    assert len(done) < 100  # the rest was never submitted


def test_map_concurrent_early_close_cancels() -> None:
    client = make_client()
    calls: list[int] = []
    gen = client.map_concurrent(lambda i: calls.append(i) or i, range(10_000), max_workers=2)
    assert next(gen) == 0
    gen.close()
    assert len(calls) <= 10


def test_requests_session_errors_are_not_swallowed() -> None:
    """A programming error (bad URL scheme) is not mistaken for a transient failure."""
    client = make_client(api="ftp://nowhere")
    with pytest.raises(requests.exceptions.InvalidSchema):
        client.get("myself")
