"""The simulator: one stdlib HTTP server playing Atlassian's auth server, gateway and Jira REST v3.

Routes (all on ``127.0.0.1``):

* ``GET /authorize``, ``POST /oauth/token`` — the authorization server (see `auth`).
* ``GET /oauth/token/accessible-resources`` — the gateway's site list, shuffled on every call
  (Atlassian promises no order).
* ``/ex/jira/{cloudId}/rest/api/3/...`` — Jira: ``myself``, ``project/search``, ``users/search``,
  ``field``, ``search/jql`` (GET/POST), ``search/approximate-count``, ``issue/bulkfetch``,
  ``issue/{idOrKey}``, ``issue/{idOrKey}/comment``, ``comment/list``, ``worklog/updated``,
  ``worklog/deleted``, ``worklog/list``; the removed ``search`` answers 410 as in Jira Cloud.
* ``/_sim/...`` — optional control endpoints for a simulator running in another process.

Faults (429 bursts, 5xx, dropped connections, latency) apply to the Jira routes only: the
authorization server has its own knobs (`refresh_hang_seconds`, ...).
"""

from __future__ import annotations

import base64
import bisect
import dataclasses
import hashlib
import json
import random
import socket
import sys
import threading
import time
import traceback
from collections import Counter, OrderedDict
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit
from zoneinfo import ZoneInfo

from . import render
from .auth import AuthServer
from .config import SimConfig, Site
from .jql import JqlError, compile_jql, sort_key_fn
from .model import STATUSES, Clock, Issue, SiteData, make_sites, ms_to_datetime

JIRA_PREFIX = "/rest/api/3/"
NOT_FOUND_ISSUE = "Issue does not exist or you do not have permission to see it."
WORKLOG_FEED_PAGE = 1000
WORKLOG_FEED_HOLDBACK_MS = 60_000


class Stats:
    """Thread-safe request counters; ``stats[("POST", "/rest/api/3/issue/bulkfetch")]`` works."""

    _NAMES = (
        "total",
        "token_refreshes",
        "refresh_failures",
        "code_exchanges",
        "revoked_grants",
        "faults_injected",
        "bytes_sent",
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.requests: Counter[tuple[str, str]] = Counter()
            self.statuses: Counter[int] = Counter()
            for n in self._NAMES:
                setattr(self, n, 0)

    def incr(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def record(self, method: str, route: str, status: int, nbytes: int) -> None:
        with self._lock:
            self.requests[(method, route)] += 1
            self.statuses[status] += 1
            self.total += 1
            self.bytes_sent += nbytes

    def __getitem__(self, key: tuple[str, str]) -> int:
        with self._lock:
            return self.requests[key]

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = {n: getattr(self, n) for n in self._NAMES}
            out["requests"] = {f"{m} {r}": c for (m, r), c in sorted(self.requests.items())}
            out["statuses"] = {str(k): v for k, v in sorted(self.statuses.items())}
            return out

    def __repr__(self) -> str:
        return f"Stats({self.snapshot()})"


class HttpError(Exception):
    """Answer with a Jira-shaped error body (``{"errorMessages": [...], "errors": {}}``)."""

    def __init__(self, status: int, *messages: str, errors: dict[str, str] | None = None) -> None:
        super().__init__(messages[0] if messages else str(status))
        self.status = status
        self.body = {"errorMessages": list(messages), "errors": errors or {}}


class _Response:
    __slots__ = ("body", "content_type", "headers", "status")

    def __init__(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json;charset=UTF-8",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers or {}


def _json(status: int, obj: Any, headers: dict[str, str] | None = None) -> _Response:
    return _Response(status, render.dumps(obj), headers=headers)


class Simulator:
    """Atlassian auth + Jira Cloud REST v3 for one or more seeded sites. See the package docs."""

    def __init__(self, cfg: SimConfig | None = None, **overrides: Any) -> None:
        cfg = dataclasses.replace(cfg or SimConfig(), **overrides)
        self.cfg = cfg
        self.clock = Clock()
        self.stats = Stats()
        self._lock = threading.RLock()
        t0 = time.perf_counter()
        self._sites = make_sites(cfg)
        now = self.clock.now_ms()
        self._data: dict[str, SiteData] = {
            s.cloud_id: SiteData(s, cfg, i, now) for i, s in enumerate(self._sites)
        }
        self.generation_seconds = time.perf_counter() - t0
        self.auth = AuthServer(cfg, self.clock, self.stats)
        self._fault_rng = random.Random(f"faults:{cfg.seed}")
        self._fault_lock = threading.Lock()
        self._mutation_rng = random.Random(f"mutations:{cfg.seed}")
        self._shuffle_rng = random.Random(f"shuffle:{cfg.seed}")
        self.rate_429 = 0.0
        self.rate_5xx = 0.0
        self.drop_rate = 0.0
        self.latency_ms = cfg.latency_ms
        self.retry_after_seconds = cfg.retry_after_seconds
        self.index_lag_seconds = cfg.index_lag_seconds
        self.user_timezone = cfg.user_timezone
        ZoneInfo(self.user_timezone)  # fail early on a bad zone name
        self.url: str | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._renderers: dict[str, render.Renderer] = {}
        self._search_cache: OrderedDict[Any, tuple[list[tuple[int, ...]], list[int]]] = OrderedDict()
        #: tracebacks of unexpected handler errors (answered 500); tests assert it stays empty
        self.errors: list[str] = []

    # ------------------------------------------------------------------ lifecycle
    def start(self, port: int = 0) -> Simulator:
        if self._server is not None:
            return self
        handler = type("SimHandler", (_Handler,), {"sim": self})
        server = _Server(("127.0.0.1", port), handler)
        server.sim = self
        self._server = server
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        self._renderers.clear()
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="jira-sim", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ knobs
    @property
    def sites(self) -> list[Site]:
        return list(self._sites)

    def now(self) -> datetime:
        return ms_to_datetime(self.clock.now_ms())

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def reset_stats(self) -> None:
        self.stats.reset()

    def set_faults(
        self,
        rate_429: float = 0.0,
        rate_5xx: float = 0.0,
        drop_rate: float = 0.0,
        latency_ms: int | None = None,
    ) -> None:
        if rate_429 + rate_5xx + drop_rate > 1:
            raise ValueError("fault rates add up to more than 1")
        self.rate_429, self.rate_5xx, self.drop_rate = rate_429, rate_5xx, drop_rate
        if latency_ms is not None:
            self.latency_ms = latency_ms

    @property
    def consent_mode(self) -> str:
        return self.auth.consent_mode

    @consent_mode.setter
    def consent_mode(self, mode: str) -> None:
        if mode not in ("allow", "deny"):
            raise ValueError("consent_mode is 'allow' or 'deny'")
        self.auth.consent_mode = mode

    @property
    def refresh_hang_seconds(self) -> float:
        return self.auth.hang_seconds

    @refresh_hang_seconds.setter
    def refresh_hang_seconds(self, seconds: float) -> None:
        self.auth.hang_seconds = seconds

    @property
    def refresh_omit_refresh_token(self) -> bool:
        return self.auth.omit_refresh_token

    @refresh_omit_refresh_token.setter
    def refresh_omit_refresh_token(self, value: bool) -> None:
        self.auth.omit_refresh_token = value

    def set_token_ttl(self, seconds: int) -> None:
        self.auth.token_ttl = seconds

    def set_refresh_leeway(self, seconds: int) -> None:
        self.auth.refresh_leeway = seconds

    def revoke_all_grants(self) -> int:
        return self.auth.revoke_all()

    def expire_grants(self) -> int:
        return self.auth.expire_all()

    def set_user_timezone(self, tz: str) -> None:
        """Change the searching user's zone (JQL literal reading, rendered offsets, `myself`)."""
        ZoneInfo(tz)
        with self._lock:
            self.user_timezone = tz
            for data in self._data.values():
                data.users[0].time_zone = tz
                data.render_epoch += 1
            for r in self._renderers.values():
                r.set_timezone(tz)

    # ------------------------------------------------------------------ data access
    def _site(self, cloud_id: str | None) -> SiteData:
        if cloud_id is None:
            return self._data[self._sites[0].cloud_id]
        return self._data[cloud_id]

    def _renderer(self, data: SiteData) -> render.Renderer:
        r = self._renderers.get(data.site.cloud_id)
        if r is None:
            r = render.Renderer(data, self.url or "https://api.atlassian.com", self.user_timezone)
            self._renderers[data.site.cloud_id] = r
        return r

    def mutate(
        self,
        cloud_id: str | None = None,
        *,
        update_issues: int = 0,
        create_issues: int = 0,
        move_issues: int = 0,
        delete_issues: int = 0,
        add_worklogs: int = 0,
        update_worklogs: int = 0,
        delete_worklogs: int = 0,
        archive_project: str | None = None,
        deactivate_user: str | None = None,
        change_user: str | None = None,
        seed: int | None = None,
    ) -> dict[str, Any]:
        """Change the site's data at sim-now. Ids in the result are strings, as Jira sends them."""
        rng = random.Random(seed) if seed is not None else self._mutation_rng
        with self._lock:
            data = self._site(cloud_id)
            out = data.mutate(
                rng,
                self.clock.now_ms(),
                update_issues=update_issues,
                create_issues=create_issues,
                move_issues=move_issues,
                delete_issues=delete_issues,
                add_worklogs=add_worklogs,
                update_worklogs=update_worklogs,
                delete_worklogs=delete_worklogs,
                archive_project=archive_project,
                deactivate_user=deactivate_user,
                change_user=change_user,
            )
            self._search_cache.clear()
        return {
            k: [str(x) for x in v] if isinstance(v, list) else (str(v) if isinstance(v, int) else v)
            for k, v in out.items()
        }

    def truth(self, cloud_id: str | None = None) -> dict[str, list[dict[str, Any]]]:
        """Live rows each CONTRACT §4 table should hold (ids as strings, times aware UTC).

        The ADF documents are the simulator's own objects: do not mutate them.
        """
        with self._lock:
            data = self._site(cloud_id)
            r = self._renderer(data)
            cid = data.site.cloud_id
            site_url = data.site.url
            projects = [
                {
                    "cloud_id": cid,
                    "id": str(p.id),
                    "key": p.key,
                    "name": p.name,
                    "project_type_key": p.type_key,
                    "is_private": p.private,
                    "lead_account_id": p.lead,
                    "is_archived": p.archived,
                    "url": f"{site_url}/browse/{p.key}",
                    "raw": r.project(p, {"description", "lead"}),
                }
                for p in data.projects
            ]
            users = [
                {
                    "cloud_id": cid,
                    "account_id": u.account_id,
                    "account_type": u.account_type,
                    "display_name": u.display_name,
                    "email_address": u.email,
                    "active": u.active,
                    "time_zone": u.time_zone,
                    "raw": r.user_full(u),
                }
                for u in data.users
            ]
            issues = []
            for i in data.issues.values():
                p = data.projects_by_id[i.project_id]
                parent = data.issues.get(i.parent_id) if i.parent_id is not None else None
                issues.append(
                    {
                        "cloud_id": cid,
                        "id": str(i.id),
                        "key": i.key,
                        "project_id": str(p.id),
                        "project_key": p.key,
                        "issue_type": i.itype,
                        "status": i.status,
                        "status_category": STATUSES[i.status][1],
                        "priority": i.priority,
                        "summary": i.summary,
                        "description_adf": data.description(i),
                        "reporter_account_id": i.reporter,
                        "assignee_account_id": i.assignee,
                        "created": ms_to_datetime(i.created),
                        "updated": ms_to_datetime(i.updated),
                        "resolution_date": ms_to_datetime(i.resolutiondate)
                        if i.resolutiondate is not None
                        else None,
                        "labels": list(i.labels),
                        "parent_key": parent.key if parent else None,
                        "url": f"{site_url}/browse/{i.key}",
                    }
                )
            worklogs = [
                {
                    "cloud_id": cid,
                    "id": str(w.id),
                    "issue_id": str(w.issue_id),
                    "author_account_id": w.author,
                    "started": ms_to_datetime(w.started),
                    "time_spent_seconds": w.seconds,
                    "comment_adf": data.worklog_comment(w),
                    "created": ms_to_datetime(w.created),
                    "updated": ms_to_datetime(w.updated),
                }
                for w in data.worklogs.values()
            ]
        return {
            "jira_projects": projects,
            "jira_users": users,
            "jira_issues": issues,
            "jira_worklogs": worklogs,
        }

    def deleted(self, cloud_id: str | None = None) -> dict[str, set[str]]:
        with self._lock:
            data = self._site(cloud_id)
            return {
                "jira_issues": {str(i) for i in data.deleted_issue_ids},
                "jira_worklogs": {str(i) for i in data.deleted_worklog_ids},
            }

    # ------------------------------------------------------------------ search core
    def _search(self, data: SiteData, jql: str | None) -> tuple[list[tuple[int, ...]], list[int]]:
        """Sorted (keys, ids) of the issues `jql` matches, as the search index sees them now."""
        now = self.clock.now_ms()
        q = compile_jql(jql, data, self.user_timezone, now)
        lag_ms = int(self.index_lag_seconds * 1000)
        ck = (data.site.cloud_id, jql, data.data_version, self.user_timezone)
        cacheable = lag_ms <= 0 and not q.time_dependent
        if cacheable and ck in self._search_cache:
            self._search_cache.move_to_end(ck)
            return self._search_cache[ck]
        pred = q.predicate
        assert pred is not None
        archived = {p.id for p in data.projects if p.archived}
        horizon = now - lag_ms
        hits: list[Issue] = [
            i
            for i in data.issues.values()
            if i.project_id not in archived and (lag_ms <= 0 or i.updated <= horizon) and pred(i)
        ]
        key = sort_key_fn(q.order, data)
        pairs = sorted((key(i), i.id) for i in hits)
        result = ([k for k, _ in pairs], [iid for _, iid in pairs])
        if cacheable:
            self._search_cache[ck] = result
            while len(self._search_cache) > 32:
                self._search_cache.popitem(last=False)
        return result


# ======================================================================================
# HTTP


def _qs_list(q: dict[str, list[str]], name: str) -> list[str]:
    out: list[str] = []
    for v in q.get(name, []):
        out.extend(x.strip() for x in v.split(",") if x.strip())
    return out


def _qs_int(q: dict[str, list[str]], name: str, default: int) -> int:
    vals = q.get(name)
    if not vals or vals[0] == "":
        return default
    try:
        return int(vals[0])
    except ValueError:
        raise HttpError(400, f"The '{name}' parameter must be an integer: '{vals[0]}'.") from None


def _str_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [x.strip() for x in value.split(",") if x.strip()]
    if isinstance(value, list):
        out: list[str] = []
        for v in value:
            out.extend(_str_list(str(v)))
        return out
    raise HttpError(400, "Expected a list of strings.")


def _token_encode(qhash: str, key: tuple[int, ...]) -> str:
    raw = json.dumps({"q": qhash, "a": list(key)}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _token_decode(token: str, qhash: str) -> tuple[int, ...]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        obj = json.loads(raw)
        key = tuple(int(x) for x in obj["a"])
        ok = obj["q"] == qhash
    except (ValueError, KeyError, TypeError):
        ok = False
        key = ()
    if not ok:
        raise HttpError(400, "The provided next page token is invalid or expired.")
    return key


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    sim: Simulator

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that time out or hang up mid-response are normal here (fault tests, hanging
        refreshes): ignore those; keep anything else for `Simulator.errors`."""
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):
            return
        self.sim.errors.append(traceback.format_exc())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "AtlassianSim/1.0"
    sys_version = ""
    # headers and body go out in two writes; without this, Nagle + delayed ACK adds ~40 ms each
    disable_nagle_algorithm = True
    sim: Simulator

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: request lines would contain codes and tokens in query strings."""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # ------------------------------------------------------------------ plumbing
    def _send(self, method: str, route: str, resp: _Response) -> None:
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(len(resp.body)))
        for k, v in resp.headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(resp.body)
        self.sim.stats.record(method, route, resp.status, len(resp.body))

    def _read_body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _dispatch(self, method: str) -> None:
        sim = self.sim
        parts = urlsplit(self.path)
        path = parts.path
        query = parse_qs(parts.query, keep_blank_values=True)
        body = self._read_body()
        self._route_name = path
        try:
            if path.startswith("/ex/jira/"):
                resp = self._jira(method, path, query, body)
                if resp is None:
                    return  # connection dropped on purpose
            elif path == "/authorize":
                resp = self._authorize(method, query)
            elif path == "/oauth/token":
                resp = self._token(method, body)
            elif path == "/oauth/token/accessible-resources":
                resp = self._resources(method)
            elif path.startswith("/_sim/") and sim.cfg.control_api:
                resp = self._control(method, path, query, body)
            else:
                self._route_name = "<unknown>"
                resp = _json(404, {"errorMessages": ["Not found"], "errors": {}})
        except HttpError as e:
            resp = _json(e.status, e.body)
        except Exception:
            sim.errors.append(traceback.format_exc())
            resp = _json(500, {"errorMessages": ["Internal server error"], "errors": {}})
        self._send(method, self._route_name, resp)

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # ------------------------------------------------------------------ auth server
    def _authorize(self, method: str, query: dict[str, list[str]]) -> _Response:
        if method != "GET":
            return _Response(405, b"Method Not Allowed", "text/plain; charset=utf-8")
        params = {k: v[0] for k, v in query.items()}
        status, text, location = self.sim.auth.authorize(params)
        if location is not None:
            return _Response(status, b"", "text/plain; charset=utf-8", {"Location": location})
        return _Response(status, text.encode(), "text/plain; charset=utf-8")

    def _token(self, method: str, body: bytes) -> _Response:
        if method != "POST":
            return _Response(405, b"Method Not Allowed", "text/plain; charset=utf-8")
        ctype = (self.headers.get("Content-Type") or "").lower()
        params: dict[str, Any]
        try:
            if "json" in ctype or body.strip().startswith(b"{"):
                params = json.loads(body or b"{}")
                if not isinstance(params, dict):
                    raise ValueError
            else:
                params = {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
        except (ValueError, UnicodeDecodeError):
            return _json(400, {"error": "invalid_request", "error_description": "Malformed request body"})
        basic = self.headers.get("Authorization") or ""
        if basic.startswith("Basic ") and "client_id" not in params:
            try:
                cid, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
                params["client_id"], params["client_secret"] = cid, secret
            except (ValueError, UnicodeDecodeError):
                pass
        result = self.sim.auth.token(params)
        if result.hang_seconds > 0:
            time.sleep(result.hang_seconds)
        return _json(result.status, result.body, {"Cache-Control": "no-store", "Pragma": "no-cache"})

    def _resources(self, method: str) -> _Response:
        if method != "GET":
            return _Response(405, b"", "text/plain; charset=utf-8")
        at = self.sim.auth.check_access(self.headers.get("Authorization"))
        if at is None:
            return _json(401, {"code": 401, "message": "Unauthorized"})
        scopes = sorted(s for s in at.scope if s != "offline_access")
        sites = self.sim.sites
        with self.sim._lock:
            self.sim._shuffle_rng.shuffle(sites)
        return _json(
            200,
            [
                {"id": s.cloud_id, "url": s.url, "name": s.name, "scopes": scopes, "avatarUrl": s.avatar_url}
                for s in sites
            ],
        )

    # ------------------------------------------------------------------ Jira
    def _fault(self) -> _Response | bool | None:
        """Returns a fault response, None to drop the connection, or False for no fault."""
        sim = self.sim
        if sim.latency_ms:
            time.sleep(sim.latency_ms / 1000)
        total = sim.drop_rate + sim.rate_429 + sim.rate_5xx
        if total <= 0:
            return False
        with sim._fault_lock:
            r = sim._fault_rng.random()
            r2 = sim._fault_rng.random()
        if r >= total:
            return False
        sim.stats.incr("faults_injected")
        if r < sim.drop_rate:
            return None
        retry = str(sim.retry_after_seconds)
        if r < sim.drop_rate + sim.rate_429:
            reset = (sim.now() + timedelta(seconds=sim.retry_after_seconds)).strftime("%Y-%m-%dT%H:%MZ")
            return _json(
                429,
                {"errorMessages": ["Rate limit exceeded."], "errors": {}},
                {
                    "Retry-After": retry,
                    "X-RateLimit-Limit": "350",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": reset,
                    "RateLimit-Reason": "jira-burst-based",
                },
            )
        if r2 < 1 / 3:
            return _json(500, {"errorMessages": ["Internal server error"], "errors": {}})
        if r2 < 2 / 3:
            return _Response(502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html")
        return _json(503, {"errorMessages": ["Service Unavailable"], "errors": {}}, {"Retry-After": retry})

    def _jira(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> _Response | None:
        sim = self.sim
        rest = path[len("/ex/jira/") :]
        cloud_id, _, sub = rest.partition("/")
        sub = "/" + sub
        if not sub.startswith(JIRA_PREFIX):
            self._route_name = "<unknown>"
            return _json(404, {"errorMessages": ["Not found"], "errors": {}})
        tail = sub[len(JIRA_PREFIX) :].rstrip("/")
        route, handler, methods, scope = _route(tail)
        self._route_name = route
        fault = self._fault()
        if fault is None:
            sim.stats.record(method, route, 0, 0)
            self._drop()
            return None
        if fault is not False:
            assert isinstance(fault, _Response)
            return fault
        at = sim.auth.check_access(self.headers.get("Authorization"))
        if at is None:
            return _json(
                401,
                {"code": 401, "message": "Unauthorized"},
                {"WWW-Authenticate": 'Bearer realm="api.atlassian.com"'},
            )
        data = sim._data.get(cloud_id)
        if data is None:
            return _json(
                404, {"errorMessages": [f"Site {cloud_id} is not available or does not exist."], "errors": {}}
            )
        if handler is None:
            return _json(404, {"errorMessages": ["Not found"], "errors": {}})
        if method not in methods:
            return _Response(405, b"", "text/plain; charset=utf-8", {"Allow": ", ".join(methods)})
        if scope not in at.scope:
            return _json(401, {"code": 401, "message": "Unauthorized; scope does not match"})
        payload: Any = None
        if method == "POST":
            try:
                payload = json.loads(body or b"null")
            except ValueError:
                raise HttpError(
                    400, "Unexpected character in the request body: it is not valid JSON."
                ) from None
        with sim._lock:
            return handler(self, _Ctx(sim, data, sim._renderer(data), method, tail, query, payload))

    # ------------------------------------------------------------------ control API
    def _control(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> _Response:
        sim = self.sim
        try:
            payload = json.loads(body) if body.strip() else {}
        except ValueError:
            raise HttpError(400, "control endpoints take a JSON object") from None
        name = path[len("/_sim/") :]
        if name == "state" and method == "GET":
            return _json(
                200,
                {
                    "now": sim.now().isoformat(),
                    "url": sim.url,
                    "sites": [s.__dict__ for s in sim.sites],
                    "stats": sim.stats.snapshot(),
                },
            )
        if method != "POST":
            raise HttpError(405, "POST expected")
        if name == "advance":
            sim.advance(float(payload.get("seconds", 0)))
            return _json(200, {"now": sim.now().isoformat()})
        if name == "mutate":
            return _json(200, sim.mutate(**payload))
        if name == "faults":
            sim.set_faults(**payload)
            return _json(200, {"ok": True})
        if name == "consent":
            sim.consent_mode = payload.get("mode", "allow")
            return _json(200, {"ok": True})
        if name == "revoke":
            return _json(200, {"revoked": sim.revoke_all_grants()})
        raise HttpError(404, f"unknown control endpoint {name}")


class _Ctx:
    """Everything a Jira endpoint handler needs; handlers run under the simulator lock."""

    __slots__ = ("data", "method", "payload", "query", "r", "sim", "tail")

    def __init__(
        self,
        sim: Simulator,
        data: SiteData,
        r: render.Renderer,
        method: str,
        tail: str,
        query: dict[str, list[str]],
        payload: Any,
    ) -> None:
        self.sim = sim
        self.data = data
        self.r = r
        self.method = method
        self.tail = tail
        self.query = query
        self.payload = payload

    def body_dict(self) -> dict[str, Any]:
        if not isinstance(self.payload, dict):
            raise HttpError(400, "The request body must be a JSON object.")
        return self.payload


# ---------------------------------------------------------------------- endpoint handlers
# Each takes (handler, ctx) and returns a _Response. Bodies are assembled from cached bytes.


def h_myself(_: _Handler, c: _Ctx) -> _Response:
    return _json(200, c.r.myself(c.data.users[0]))


def h_field(_: _Handler, c: _Ctx) -> _Response:
    return _json(200, render.FIELDS)


def h_users_search(_: _Handler, c: _Ctx) -> _Response:
    start = max(0, _qs_int(c.query, "startAt", 0))
    size = min(max(0, _qs_int(c.query, "maxResults", 50)), 1000)
    return _json(200, [c.r.user_full(u) for u in c.data.users[start : start + size]])


_PROJECT_ORDERS = {
    "key": lambda p: p.key,
    "name": lambda p: p.name.lower(),
    "id": lambda p: p.id,
    "archiveddate": lambda p: p.archived_ms or 0,
    "owner": lambda p: p.lead,
}


def h_project_search(_: _Handler, c: _Ctx) -> _Response:
    q = c.query
    start = max(0, _qs_int(q, "startAt", 0))
    size = _qs_int(q, "maxResults", 50)
    size = 100 if size > 100 or size < 1 else size
    statuses = [s.lower() for s in _qs_list(q, "status")] or ["live"]
    bad = [s for s in statuses if s not in ("live", "archived", "deleted")]
    if bad:
        raise HttpError(400, f"Invalid project status: {bad[0]}. Valid values are live, archived, deleted.")
    order = (q.get("orderBy") or ["key"])[0]
    desc = order.startswith("-")
    okey = _PROJECT_ORDERS.get(order.lstrip("+-").lower())
    if okey is None:
        raise HttpError(400, f"Invalid orderBy parameter: {order}.")
    expand = {e.lower() for e in _qs_list(q, "expand")}
    keys = {k.upper() for k in _qs_list(q, "keys")}
    ids = set(_qs_list(q, "id"))
    text = (q.get("query") or [""])[0].lower()
    types = set(_qs_list(q, "typeKey"))
    chosen = [
        p
        for p in c.data.projects
        if (("archived" in statuses) if p.archived else ("live" in statuses))
        and (not keys or p.key in keys)
        and (not ids or str(p.id) in ids)
        and (not text or text in p.key.lower() or text in p.name.lower())
        and (not types or p.type_key in types)
    ]
    chosen.sort(key=okey, reverse=desc)
    page = chosen[start : start + size]
    is_last = start + len(page) >= len(chosen)
    flat = [(k, v) for k, vs in q.items() if k not in ("startAt", "maxResults") for v in vs]
    base = f"{c.r.api}/project/search"
    out: dict[str, Any] = {
        "self": f"{base}?{urlencode([('startAt', start), ('maxResults', size), *flat])}",
        "maxResults": size,
        "startAt": start,
        "total": len(chosen),
        "isLast": is_last,
        "values": [c.r.project(p, expand) for p in page],
    }
    if not is_last:
        out["nextPage"] = f"{base}?{urlencode([('startAt', start + size), ('maxResults', size), *flat])}"
    return _json(200, out)


def _search_params(c: _Ctx) -> dict[str, Any]:
    if c.method == "GET":
        q = c.query
        return {
            "jql": (q.get("jql") or [None])[0],
            "nextPageToken": (q.get("nextPageToken") or [None])[0],
            "maxResults": _qs_int(q, "maxResults", 50),
            "fields": _qs_list(q, "fields"),
            "expand": _qs_list(q, "expand"),
        }
    b = c.body_dict()
    max_results = b.get("maxResults", 50)
    if not isinstance(max_results, int):
        raise HttpError(400, "maxResults must be an integer.")
    return {
        "jql": b.get("jql"),
        "nextPageToken": b.get("nextPageToken"),
        "maxResults": max_results,
        "fields": _str_list(b.get("fields")),
        "expand": _str_list(b.get("expand")),
    }


def _run_jql(c: _Ctx, jql: str | None) -> tuple[list[tuple[int, ...]], list[int]]:
    try:
        return c.sim._search(c.data, jql)
    except JqlError as e:
        raise HttpError(400, str(e)) from None


def h_search_jql(_: _Handler, c: _Ctx) -> _Response:
    p = _search_params(c)
    jql = p["jql"]
    keys, ids = _run_jql(c, jql)
    qhash = hashlib.sha1((jql or "").encode(), usedforsecurity=False).hexdigest()[:12]
    start = 0
    if p["nextPageToken"]:
        start = bisect.bisect_right(keys, _token_decode(p["nextPageToken"], qhash))
    fields = render.select_fields(p["fields"], "id")
    id_mode = fields in (render.ID_ONLY, render.ID_KEY)
    cap = c.sim.cfg.page_issue_ids if id_mode else c.sim.cfg.page_issues
    size = max(1, min(p["maxResults"], cap))
    page = ids[start : start + size]
    end = start + len(page)
    is_last = end >= len(ids)
    issues = c.data.issues
    if fields == render.ID_ONLY:
        parts = [b'{"id":"%d"}' % iid for iid in page]
    elif fields == render.ID_KEY:
        parts = [render.dumps({"id": str(iid), "key": issues[iid].key}) for iid in page]
    else:
        parts = [c.r.issue_bytes(issues[iid], fields) for iid in page]
    out = [b'{"issues":[', b",".join(parts), b"]"]
    expand = {e.strip() for e in p["expand"]}
    if "names" in expand and not id_mode:
        out.append(b',"names":' + render.dumps({f: render.FIELD_NAMES[f] for f in fields}))
    if "schema" in expand and not id_mode:
        out.append(
            b',"schema":'
            + render.dumps({f: render.FIELD_SCHEMAS[f] for f in fields if f in render.FIELD_SCHEMAS})
        )
    if not is_last:
        out.append(b',"nextPageToken":' + render.dumps(_token_encode(qhash, keys[end - 1])))
    out.append(b',"isLast":true}' if is_last else b',"isLast":false}')
    return _Response(200, b"".join(out))


def h_approximate_count(_: _Handler, c: _Ctx) -> _Response:
    b = c.body_dict()
    _, ids = _run_jql(c, b.get("jql"))
    return _json(200, {"count": len(ids)})


def h_bulkfetch(_: _Handler, c: _Ctx) -> _Response:
    b = c.body_dict()
    wanted = b.get("issueIdsOrKeys")
    if not isinstance(wanted, list) or not wanted or len(wanted) > 100:
        raise HttpError(400, "The number of issue IDs or keys requested must be between 1 and 100.")
    fields = render.select_fields(_str_list(b.get("fields")), "*navigable")
    expand = frozenset(e for e in _str_list(b.get("expand")) if e in ("names", "schema", "changelog"))
    parts: list[bytes] = []
    errors: list[dict[str, str]] = []
    seen: set[int] = set()
    for item in wanted:
        issue = c.data.resolve_issue(str(item))
        if issue is None:
            errors.append({"id": str(item), "errorMessage": NOT_FOUND_ISSUE})
            continue
        if issue.id in seen:
            continue
        seen.add(issue.id)
        parts.append(c.r.issue_bytes(issue, fields, expand))
    return _Response(
        200, b'{"issues":[' + b",".join(parts) + b'],"issueErrors":' + render.dumps(errors) + b"}"
    )


def h_issue(_: _Handler, c: _Ctx) -> _Response:
    key = c.tail.split("/")[1]
    issue = c.data.resolve_issue(key)
    if issue is None:
        raise HttpError(404, NOT_FOUND_ISSUE)
    fields = render.select_fields(_qs_list(c.query, "fields"), "*all")
    expand = frozenset(e for e in _qs_list(c.query, "expand") if e in ("names", "schema", "changelog"))
    return _Response(200, c.r.issue_bytes(issue, fields, expand))


def h_issue_comments(_: _Handler, c: _Ctx) -> _Response:
    key = c.tail.split("/")[1]
    issue = c.data.resolve_issue(key)
    if issue is None:
        raise HttpError(404, NOT_FOUND_ISSUE)
    start = max(0, _qs_int(c.query, "startAt", 0))
    size = min(max(0, _qs_int(c.query, "maxResults", 100)), 5000)
    order = (c.query.get("orderBy") or ["created"])[0]
    if order not in ("created", "+created", "-created"):
        raise HttpError(400, f"Invalid orderBy value: {order}. Only 'created' is supported.")
    comments = [c.data.comments[x] for x in issue.comments if x in c.data.comments]
    comments.sort(key=lambda cm: (cm.created, cm.id), reverse=order == "-created")
    page = comments[start : start + size]
    return _json(
        200,
        {
            "startAt": start,
            "maxResults": size,
            "total": len(comments),
            "comments": [c.r.comment(cm) for cm in page],
        },
    )


def _id_list(b: dict[str, Any], limit: int, what: str) -> list[int]:
    ids = b.get("ids")
    if not isinstance(ids, list) or not ids or len(ids) > limit:
        raise HttpError(400, f"The number of {what} IDs must be between 1 and {limit}.")
    out = []
    for x in ids:
        try:
            out.append(int(x))
        except (TypeError, ValueError):
            raise HttpError(400, f"Invalid {what} ID: {x!r}.") from None
    return out


def h_comment_list(_: _Handler, c: _Ctx) -> _Response:
    ids = _id_list(c.body_dict(), 1000, "comment")
    found = [c.data.comments[i] for i in dict.fromkeys(ids) if i in c.data.comments]
    return _json(
        200,
        {
            "isLast": True,
            "maxResults": 1048576,
            "startAt": 0,
            "total": len(found),
            "values": [c.r.comment(cm) for cm in found],
        },
    )


def h_worklog_list(_: _Handler, c: _Ctx) -> _Response:
    ids = _id_list(c.body_dict(), 1000, "worklog")
    wls = c.data.worklogs
    parts = [c.r.worklog_bytes(wls[i]) for i in dict.fromkeys(ids) if i in wls]
    return _Response(200, b"[" + b",".join(parts) + b"]")


def _worklog_feed(c: _Ctx, kind: str) -> _Response:
    since = _qs_int(c.query, "since", 0)
    index = c.data.wl_updated if kind == "updated" else c.data.wl_deleted
    cutoff = c.sim.clock.now_ms() - WORKLOG_FEED_HOLDBACK_MS
    i = bisect.bisect_left(index, (since, -1))
    page: list[tuple[int, int]] = []
    while i < len(index) and len(page) < WORKLOG_FEED_PAGE and index[i][0] <= cutoff:
        page.append(index[i])
        i += 1
    last = not (i < len(index) and index[i][0] <= cutoff)
    until = page[-1][0] if page else since
    base = f"{c.data.site.url}/rest/api/3/worklog/{kind}"
    out: dict[str, Any] = {
        "values": [{"worklogId": wid, "updatedTime": t, "properties": []} for t, wid in page],
        "since": since,
        "until": until,
        "self": f"{base}?since={since}",
        "lastPage": last,
    }
    if not last:
        out["nextPage"] = f"{base}?since={until}"
    return _json(200, out)


def h_worklog_updated(_: _Handler, c: _Ctx) -> _Response:
    return _worklog_feed(c, "updated")


def h_worklog_deleted(_: _Handler, c: _Ctx) -> _Response:
    return _worklog_feed(c, "deleted")


def h_search_gone(_: _Handler, c: _Ctx) -> _Response:
    raise HttpError(
        410,
        "The requested API has been removed. Please migrate to the /rest/api/3/search/jql API. "
        "A full migration guideline is available at https://developer.atlassian.com/changelog/#CHANGE-2046",
    )


WORK = "read:jira-work"
USER = "read:jira-user"
_EXACT: dict[str, tuple[str, Any, tuple[str, ...], str]] = {
    "myself": ("/rest/api/3/myself", h_myself, ("GET",), USER),
    "field": ("/rest/api/3/field", h_field, ("GET",), WORK),
    "users/search": ("/rest/api/3/users/search", h_users_search, ("GET",), USER),
    "project/search": ("/rest/api/3/project/search", h_project_search, ("GET",), WORK),
    "search/jql": ("/rest/api/3/search/jql", h_search_jql, ("GET", "POST"), WORK),
    "search/approximate-count": (
        "/rest/api/3/search/approximate-count",
        h_approximate_count,
        ("POST",),
        WORK,
    ),
    "search": ("/rest/api/3/search", h_search_gone, ("GET", "POST"), WORK),
    "issue/bulkfetch": ("/rest/api/3/issue/bulkfetch", h_bulkfetch, ("POST",), WORK),
    "comment/list": ("/rest/api/3/comment/list", h_comment_list, ("POST",), WORK),
    "worklog/updated": ("/rest/api/3/worklog/updated", h_worklog_updated, ("GET",), WORK),
    "worklog/deleted": ("/rest/api/3/worklog/deleted", h_worklog_deleted, ("GET",), WORK),
    "worklog/list": ("/rest/api/3/worklog/list", h_worklog_list, ("POST",), WORK),
}


def _route(tail: str) -> tuple[str, Any, tuple[str, ...], str]:
    hit = _EXACT.get(tail)
    if hit:
        return hit
    parts = tail.split("/")
    if len(parts) == 2 and parts[0] == "issue" and parts[1]:
        return "/rest/api/3/issue/{issueIdOrKey}", h_issue, ("GET",), WORK
    if len(parts) == 3 and parts[0] == "issue" and parts[2] == "comment":
        return "/rest/api/3/issue/{issueIdOrKey}/comment", h_issue_comments, ("GET",), WORK
    return "<unknown>", None, (), WORK


def iter_routes() -> Iterator[tuple[str, tuple[str, ...]]]:
    """The Jira routes served, for documentation and coverage checks."""
    for route, _, methods, _ in _EXACT.values():
        yield route, methods
    yield "/rest/api/3/issue/{issueIdOrKey}", ("GET",)
    yield "/rest/api/3/issue/{issueIdOrKey}/comment", ("GET",)
