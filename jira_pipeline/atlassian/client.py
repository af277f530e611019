"""A small, thread-safe Jira Cloud REST v3 client for one site, reached through the 3LO gateway.

Why it exists rather than a generic HTTP library: Jira Cloud's behaviour under load needs
specific handling that every caller would otherwise repeat.

* Rate limits come as 429 (and some 503) with `Retry-After` in seconds or as an HTTP date, and
  sometimes only `X-RateLimit-Reset` (an ISO timestamp). We honour them, capped, with a little
  jitter, and pause *all* threads of this client until the window passes so parallel workers do
  not keep hammering a limited tenant.
* 500/502/504, dropped connections and read timeouts are retried with exponential backoff and
  full jitter. Every POST this pipeline sends (search/jql, approximate-count, issue/bulkfetch,
  worklog/list, comment/list) is a read, so retrying them is safe.
* 401 means the access token expired or was revoked under us: the token provider refreshes once
  (single-flight is its job) and the request is repeated; a second 401 is fatal.
* Other 4xx (400 bad JQL, 403, 404, 410 for the retired /search) cannot be fixed by retrying and
  fail immediately with Jira's own message and the request path.
* Jira uses four pagination styles; `paginate` covers them all, including worklog feeds whose
  `nextPage` links point at the *site* host, which a 3LO token cannot call: those are rebuilt on
  the gateway base URL.

Headers (and so tokens) are never logged; log lines carry method, path, reason, attempt and wait.
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, TypeVar
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from .errors import AtlassianError

__all__ = [
    "ClientStats",
    "JiraApiError",
    "JiraClient",
    "Page",
    "PaginationStyle",
    "StaticTokenProvider",
    "TokenProvider",
]

T = TypeVar("T")
R = TypeVar("R")

PaginationStyle = Literal["offset", "array", "token", "links"]

_RETRY_AFTER_STATUSES = frozenset({429, 503})
_BACKOFF_STATUSES = frozenset({408, 500, 502, 504})
_REST_MARKER = "/rest/api/3/"


class TokenProvider(Protocol):
    """Where the client gets bearer tokens. Implementations must be thread-safe.

    `refresh_after_401` may be called concurrently by several threads for the same rejected token;
    an implementation should refresh once (single-flight) and hand the new token to all of them,
    e.g. by returning its current token when it already differs from `rejected`.
    """

    def access_token(self) -> str:
        """A currently valid access token (refreshed proactively when close to expiry)."""
        ...

    def refresh_after_401(self, rejected: str) -> str:
        """Jira answered 401 to `rejected`: return a token worth one more try, or raise."""
        ...


@dataclass
class StaticTokenProvider:
    """A fixed token, e.g. for one-off scripts. A 401 cannot be healed: it raises."""

    token: str = field(repr=False)

    def access_token(self) -> str:
        return self.token

    def refresh_after_401(self, rejected: str) -> str:
        raise AtlassianError(
            "The access token was rejected (401) and this token provider cannot refresh it.", status=401
        )


class JiraApiError(AtlassianError):
    """Jira refused a request (or retries ran out). Carries Jira's own message and the path."""

    def __init__(self, status: int | None, method: str, path: str, message: str, *, retryable: bool = False) -> None:
        self.method = method
        self.path = path
        self.jira_message = message
        code = f"HTTP {status}" if status is not None else "no HTTP answer"
        super().__init__(f"{method} {path} -> {code}: {message}", status=status, retryable=retryable)


@dataclass
class ClientStats:
    """Counters for observability (asset metadata, tests). Increments are lock-protected."""

    requests: int = 0
    retries: int = 0
    throttled: int = 0
    server_errors: int = 0
    connection_errors: int = 0
    refreshes_after_401: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def incr(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {
                "requests": self.requests,
                "retries": self.retries,
                "throttled": self.throttled,
                "server_errors": self.server_errors,
                "connection_errors": self.connection_errors,
                "refreshes_after_401": self.refreshes_after_401,
            }


@dataclass(frozen=True)
class Page:
    """One page from `JiraClient.paginate`: the extracted `items` and the untouched `body`."""

    items: list[Any]
    body: Any


class JiraClient:
    """REST v3 client for one Jira Cloud site (`cloud_id`) through the API gateway."""

    def __init__(
        self,
        api_url: str,
        cloud_id: str,
        tokens: TokenProvider,
        *,
        max_retries: int = 8,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        timeout: tuple[float, float] = (10, 60),
        max_concurrency: int = 8,
        session: requests.Session | None = None,
        logger: logging.Logger | None = None,
        retry_after_max: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        """`sleep`/`clock`/`rng` are injectable so tests can run retry schedules without waiting.
        `retry_after_max` caps how long a single Retry-After may park us."""
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        self.api_url = api_url.rstrip("/")
        self.cloud_id = cloud_id
        self.base_url = f"{self.api_url}/ex/jira/{cloud_id}/rest/api/3"
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.retry_after_max = retry_after_max
        self.timeout = timeout
        self.max_concurrency = max_concurrency
        self.stats = ClientStats()
        self.log = logger or logging.getLogger(__name__)
        self._tokens = tokens
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._rng_lock = threading.Lock()
        # Caps requests on the wire across every thread using this client (nested map_concurrent
        # included); waits for backoff happen outside it so sleeping threads do not hold slots.
        self._slots = threading.BoundedSemaphore(max_concurrency)
        # Monotonic instant before which no thread may send: set by Retry-After answers.
        self._paused_until = 0.0
        self._pause_lock = threading.Lock()
        self._own_session = session is None
        if session is None:
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(max_concurrency, 10), max_retries=0)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
        self.session = session

    def __repr__(self) -> str:
        return f"JiraClient(base_url={self.base_url!r})"

    def close(self) -> None:
        if self._own_session:
            self.session.close()

    def __enter__(self) -> JiraClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------------------------- requests

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET `path` (relative to base_url, e.g. "myself"; or an absolute Jira link)."""
        return self.request("GET", path, params=params)

    def post(self, path: str, json: Any, params: Mapping[str, Any] | None = None) -> Any:
        """POST a JSON body. Only read-only POSTs are used, so retries are safe."""
        return self.request("POST", path, params=params, json=json)

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None, json: Any = None) -> Any:
        url, shown = self._resolve(path)
        attempt = 0  # retries so far (401 refresh does not count)
        refreshed = False
        token: str | None = None
        while True:
            if token is None:
                token = self._tokens.access_token()
            self._await_pause()
            self.stats.incr("requests")
            try:
                with self._slots:
                    resp = self.session.request(
                        method,
                        url,
                        params=params,
                        json=json,
                        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                        timeout=self.timeout,
                    )
                    # Reading the body inside the slot: a dropped connection mid-body surfaces here.
                    content = resp.content
            except (
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,
            ) as exc:
                self.stats.incr("connection_errors")
                reason = _exc_reason(exc)
                attempt = self._retry_or_raise(method, shown, reason, attempt, None, status=None)
                token = None
                continue

            status = resp.status_code
            if 200 <= status < 300:
                return self._decode(resp, content, method, shown)
            if status == 401:
                if refreshed:
                    raise JiraApiError(
                        401,
                        method,
                        shown,
                        _jira_message(resp) + " (still 401 after refreshing the access token)",
                    )
                refreshed = True
                self.stats.incr("refreshes_after_401")
                self.log.info("Jira %s %s: 401, refreshing the access token once", method, shown)
                token = self._tokens.refresh_after_401(token)
                continue
            if status in _RETRY_AFTER_STATUSES:
                self.stats.incr("throttled" if status == 429 else "server_errors")
                hinted = _retry_after_seconds(resp.headers)
                if hinted is not None:
                    # A reset stamp in the past (minute-granular X-RateLimit-Reset) still deserves a pause.
                    hinted = min(max(hinted, self.backoff_base), self.retry_after_max)
                why = f"HTTP {status}"
                rl_reason = resp.headers.get("RateLimit-Reason")
                if rl_reason:
                    why += f" ({rl_reason})"
                attempt = self._retry_or_raise(method, shown, why, attempt, hinted, status=status, resp=resp)
                token = None
                continue
            if status in _BACKOFF_STATUSES:
                self.stats.incr("server_errors")
                attempt = self._retry_or_raise(method, shown, f"HTTP {status}", attempt, None, status=status, resp=resp)
                token = None
                continue
            raise JiraApiError(status, method, shown, _jira_message(resp))

    # --------------------------------------------------------------------------------- pagination

    def paginate(
        self,
        path: str,
        *,
        style: PaginationStyle,
        method: Literal["GET", "POST"] = "GET",
        params: Mapping[str, Any] | None = None,
        json: Mapping[str, Any] | None = None,
        items_key: str | None = "values",
        page_size: int | None = None,
        stop_on_short: bool = False,
    ) -> Iterator[Page]:
        """Walk every page of a Jira collection; yields `Page(items, body)` lazily.

        Styles, as Jira Cloud actually serves them:

        * ``offset``: `startAt`/`maxResults` with `isLast` (project/search, comment/list). Falls
          back to `total` when `isLast` is absent; always stops on an empty page.
        * ``array``: a bare JSON array with `startAt`/`maxResults` (users/search). There is no
          end marker; Jira may silently cap `maxResults`, so we advance by what actually came back
          and stop on an empty page (or a short one when `stop_on_short`).
        * ``token``: `nextPageToken` + `isLast` (search/jql). For POST the token goes in the body.
        * ``links``: `nextPage` absolute URL + `lastPage` (worklog/updated|deleted). The link's
          host is the site (https://x.atlassian.net/rest/api/3/...), unusable with a 3LO token,
          so it is rebuilt on `base_url` keeping its query string.

        `page_size` is sent as `maxResults` (in the body for POST token style).
        """
        base_params = dict(params or {})
        body = dict(json or {}) if json is not None else None
        if style in ("offset", "array"):
            start = int(base_params.pop("startAt", 0))
            if page_size is not None:
                base_params["maxResults"] = page_size
            while True:
                data = self._send(method, path, {**base_params, "startAt": start}, body)
                if style == "array":
                    items = _as_list(data, None, method, path)
                else:
                    items = _as_list(data, items_key, method, path)
                yield Page(items, data)
                if not items:
                    return
                if style == "offset":
                    if data.get("isLast") is True:
                        return
                    total = data.get("total")
                    if "isLast" not in data and isinstance(total, int) and start + len(items) >= total:
                        return
                elif stop_on_short and page_size is not None and len(items) < page_size:
                    return
                start += len(items)
        elif style == "token":
            token: str | None = None
            seen: set[str] = set()
            while True:
                if method == "POST":
                    send_body = dict(body or {})
                    if page_size is not None:
                        send_body["maxResults"] = page_size
                    if token:
                        send_body["nextPageToken"] = token
                    data = self._send(method, path, base_params or None, send_body)
                else:
                    p = dict(base_params)
                    if page_size is not None:
                        p["maxResults"] = page_size
                    if token:
                        p["nextPageToken"] = token
                    data = self._send(method, path, p, None)
                items = _as_list(data, items_key, method, path)
                yield Page(items, data)
                token = data.get("nextPageToken")
                if data.get("isLast") is True or not token:
                    return
                if token in seen:
                    raise JiraApiError(200, method, path, "Jira repeated a nextPageToken; refusing to loop")
                seen.add(token)
        elif style == "links":
            target: str = path
            p: Mapping[str, Any] | None = base_params or None
            visited: set[str] = set()
            while True:
                data = self._send(method, target, p, body)
                items = _as_list(data, items_key, method, path)
                yield Page(items, data)
                nxt = data.get("nextPage")
                if data.get("lastPage") is True or not nxt:
                    return
                rebuilt = self.rebuild_link(nxt, fallback_path=path)
                if rebuilt in visited:
                    raise JiraApiError(200, method, path, "Jira repeated a nextPage link; refusing to loop")
                visited.add(rebuilt)
                target, p = rebuilt, None
        else:  # pragma: no cover - guarded by the Literal type
            raise ValueError(f"unknown pagination style {style!r}")

    def rebuild_link(self, link: str, *, fallback_path: str | None = None) -> str:
        """Move a Jira-issued absolute link onto the gateway: keep the REST path and the query.

        Jira builds `nextPage`/`self` links on the site host (or, in the spec's examples, with
        odd prefixes like `/api/~ver~/`). Everything after `/rest/api/3/` is the resource; if that
        marker is missing the resource is assumed to be `fallback_path` (the one we just called).
        """
        parts = urlsplit(link)
        idx = parts.path.find(_REST_MARKER)
        if idx >= 0:
            rel = parts.path[idx + len(_REST_MARKER) :]
        elif fallback_path is not None:
            rel = fallback_path.split("?", 1)[0].lstrip("/")
        else:
            raise ValueError(f"cannot map link {link!r} onto the Jira REST base")
        url = f"{self.base_url}/{rel}"
        return f"{url}?{parts.query}" if parts.query else url

    # -------------------------------------------------------------------------------- concurrency

    def map_concurrent(
        self,
        fn: Callable[[T], R],
        items: Iterable[T],
        *,
        max_workers: int | None = None,
    ) -> Iterator[R]:
        """Apply `fn` to `items` on a thread pool, yielding results in input order.

        Streaming and memory-bounded: `items` is consumed lazily and at most `2 * max_workers`
        calls are submitted but not yet yielded (so a slow head item does not idle the others,
        while a huge id list never becomes a huge futures list). The first exception (in input
        order) propagates and cancels what has not started; closing the generator early does too.
        """
        workers = max(1, max_workers or self.max_concurrency)
        window = 2 * workers
        it = iter(items)
        pending: deque[Future[R]] = deque()
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="jira-client")
        try:
            for item in it:
                pending.append(pool.submit(fn, item))
                if len(pending) >= window:
                    break
            while pending:
                fut = pending.popleft()
                result = fut.result()
                for item in it:
                    pending.append(pool.submit(fn, item))
                    break
                yield result
        finally:
            for fut in pending:
                fut.cancel()
            pool.shutdown(wait=True, cancel_futures=True)

    # ---------------------------------------------------------------------------------- internals

    def _send(self, method: str, path: str, params: Mapping[str, Any] | None, body: Any) -> Any:
        if method == "POST":
            return self.request("POST", path, params=params, json=body if body is not None else {})
        return self.request(method, path, params=params)

    def _resolve(self, path: str) -> tuple[str, str]:
        """Full URL to call, and the short form shown in logs/errors (no host, no query)."""
        if path.startswith(("http://", "https://")):
            url = path if path.startswith(self.base_url + "/") else self.rebuild_link(path)
        else:
            url = f"{self.base_url}/{path.lstrip('/')}"
        shown = url[len(self.base_url) + 1 :] if url.startswith(self.base_url + "/") else urlsplit(url).path
        return url, shown.split("?", 1)[0]

    def _await_pause(self) -> None:
        with self._pause_lock:
            remaining = self._paused_until - self._clock()
        if remaining > 0:
            self._sleep(remaining)

    def _pause_all(self, seconds: float) -> None:
        with self._pause_lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    def _jitter(self, low: float, high: float) -> float:
        with self._rng_lock:
            return self._rng.uniform(low, high)

    def _retry_or_raise(
        self,
        method: str,
        shown: str,
        reason: str,
        attempt: int,
        hinted: float | None,
        *,
        status: int | None,
        resp: requests.Response | None = None,
    ) -> int:
        """Sleep before the next attempt, or raise when the retry budget is spent."""
        if attempt >= self.max_retries:
            msg = f"gave up after {attempt + 1} attempts; last failure: {reason}"
            if resp is not None:
                msg += f"; Jira said: {_jira_message(resp)}"
            raise JiraApiError(status, method, shown, msg, retryable=True)
        if hinted is not None:
            # Honour the server's hint; a little jitter keeps parallel workers from re-colliding.
            wait = hinted + self._jitter(0, min(1.0, 0.1 * hinted + 0.05))
            self._pause_all(hinted)
        else:
            cap = min(self.backoff_max, self.backoff_base * (2**attempt))
            wait = self._jitter(0, cap)  # "full jitter"
        attempt += 1
        self.stats.incr("retries")
        self.log.warning("Jira %s %s: %s; retry %d/%d in %.2fs", method, shown, reason, attempt, self.max_retries, wait)
        self._sleep(wait)
        return attempt

    def _decode(self, resp: requests.Response, content: bytes, method: str, shown: str) -> Any:
        if resp.status_code == 204 or not content.strip():
            return None
        try:
            return resp.json()
        except ValueError:
            snippet = content[:160].decode("utf-8", "replace")
            raise JiraApiError(
                resp.status_code,
                method,
                shown,
                f"malformed JSON in a {resp.status_code} answer ({len(content)} bytes): {snippet!r}",
            ) from None


def _as_list(data: Any, key: str | None, method: str, path: str) -> list[Any]:
    value = data if key is None else (data.get(key) if isinstance(data, dict) else None)
    if value is None and key is not None and isinstance(data, dict):
        return []
    if not isinstance(value, list):
        raise JiraApiError(
            200,
            method,
            path,
            f"unexpected page shape: expected {'an array' if key is None else repr(key)} list",
        )
    return value


def _exc_reason(exc: BaseException) -> str:
    name = type(exc).__name__
    text = str(exc)
    for marker in (
        "RemoteDisconnected",
        "Connection refused",
        "Connection reset",
        "Read timed out",
        "IncompleteRead",
        "Connection aborted",
        "timed out",
    ):
        if marker in text:
            return f"{name} ({marker})"
    return name


def _retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from `Retry-After` (delta-seconds or HTTP date) or `X-RateLimit-Reset`.

    Atlassian documents `X-RateLimit-Reset` as an ISO 8601 timestamp; epoch seconds are accepted
    too. Past instants give 0, garbage gives None (then exponential backoff applies).
    """
    raw = headers.get("Retry-After")
    if raw:
        raw = raw.strip()
        try:
            return max(0.0, float(raw))
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            when = None
        if when is not None:
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            return max(0.0, (when - datetime.now(UTC)).total_seconds())
    reset = headers.get("X-RateLimit-Reset")
    if reset:
        reset = reset.strip()
        try:
            value = float(reset)
        except ValueError:
            value = None
        if value is not None:
            # Epoch seconds (or milliseconds) vs. a small delta.
            if value > 1e12:
                value /= 1000
            return max(0.0, value - time.time()) if value > 1e9 else max(0.0, value)
        try:
            when = datetime.fromisoformat(reset.replace("Z", "+00:00"))
        except ValueError:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - datetime.now(UTC)).total_seconds())
    return None


def _jira_message(resp: requests.Response) -> str:
    """Jira's error text: `errorMessages` + `errors` (field -> message), or `message`, or a snippet."""
    try:
        data = resp.json()
    except ValueError:
        text = resp.text.strip()
        return repr(text[:300]) if text else "(empty body)"
    parts: list[str] = []
    if isinstance(data, dict):
        msgs = data.get("errorMessages")
        if isinstance(msgs, list):
            parts.extend(str(m) for m in msgs if m)
        errs = data.get("errors")
        if isinstance(errs, dict):
            parts.extend(f"{k}: {v}" for k, v in errs.items())
        for key in ("message", "errorMessage", "error_description", "error"):
            if not parts and data.get(key):
                parts.append(str(data[key]))
    if not parts:
        return repr(resp.text.strip()[:300])
    return "; ".join(parts)[:1000]
