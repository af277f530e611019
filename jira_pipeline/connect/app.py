"""Starlette app that connects Jira sites through Atlassian OAuth 2.0 (3LO).

`state` is random, single-use and expires after ten minutes. It lives hashed in the table store,
not in memory, so the connector can restart, or run as several replicas, between /add and /callback.
Whatever goes wrong in /callback, nothing is stored unless the whole flow succeeded.
"""

from __future__ import annotations

import hashlib
import html
import logging
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from jira_pipeline.atlassian import streams
from jira_pipeline.atlassian.client import JiraClient
from jira_pipeline.atlassian.oauth import (
    AtlassianError,
    InvalidClient,
    OAuthConfig,
    accessible_resources,
    authorization_url,
    exchange_code,
)
from jira_pipeline.grants import GrantManager, utcnow

log = logging.getLogger(__name__)

ADD_PATH = "/api/v1/auth/jira/connector/add"
CALLBACK_PATH = "/api/v1/auth/jira/connector/callback"
STATE_TTL = timedelta(minutes=10)


def _hash_state(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


_SECRET_QUERY = re.compile(r"([?&](?:code|state)=)[^&\s\"]*")


def redact_query(text: str) -> str:
    """Blank the `code` and `state` values of a callback URL: an access log must not hold a live
    authorization code (single use, but redeemable for ten minutes by whoever has the client secret)."""
    return _SECRET_QUERY.sub(r"\1[redacted]", text)


class RedactCallbackQuery(logging.Filter):
    """Logging filter for uvicorn's access log (`uvicorn.access`), whose records carry the full path
    with its query string as an argument."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact_query(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = redact_query(record.msg)
        return True


def install_log_redaction() -> None:
    """Attach `RedactCallbackQuery` to uvicorn's access logger (idempotent)."""
    logger = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactCallbackQuery) for f in logger.filters):
        logger.addFilter(RedactCallbackQuery())


class _StaticToken:
    """Token provider for the one /myself call made right after the exchange."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __repr__(self) -> str:
        return "_StaticToken(<hidden>)"

    def access_token(self) -> str:
        return self._token

    def refresh_after_401(self, rejected: str) -> str:
        return self._token


@dataclass
class ConnectResult:
    grant_id: str
    sites: list[dict[str, Any]]


@dataclass
class Connector:
    """The flow itself, shared by the web app and `jira-pipeline connect`.

    `on_connected` hooks run after a grant was stored; `on_failed` hooks run with every rejected
    callback (the CLI uses them to stop waiting when the user denied access).
    """

    grants: GrantManager
    on_connected: list[Callable[[ConnectResult], None]] = field(default_factory=list)
    on_failed: list[Callable[[ConnectError], None]] = field(default_factory=list)

    @property
    def oauth(self) -> OAuthConfig:
        return self.grants.oauth

    def start(self) -> str:
        """A fresh authorization URL whose state is stored (hashed) for ten minutes."""
        state = secrets.token_urlsafe(32)
        self.grants.warehouse.put_oauth_state(_hash_state(state), utcnow() + STATE_TTL)
        return authorization_url(self.oauth, state)

    def finish(self, params: dict[str, str]) -> ConnectResult:
        """Validate state, exchange the code, list sites, store the grant. Raises `ConnectError`."""
        try:
            result = self._finish(params)
        except ConnectError as exc:
            log.warning("Jira connect callback rejected: %s", exc.title)
            for hook in self.on_failed:
                hook(exc)
            raise
        log.info("Connected Jira site(s) %s", ", ".join(s.get("name") or s["id"] for s in result.sites))
        for hook in self.on_connected:
            hook(result)
        return result

    def _finish(self, params: dict[str, str]) -> ConnectResult:
        # The state is consumed first, whatever else the callback carries: it is single use even when
        # the user denied access, so a replay of any callback URL answers "already used".
        state = params.get("state") or ""
        stored = self.grants.warehouse.consume_oauth_state(_hash_state(state)) if state else None
        if params.get("error"):
            desc = params.get("error_description") or params["error"]
            if params["error"] == "access_denied":
                raise ConnectError(
                    403, "Access was not granted", f"Atlassian reports: {desc}. Nothing was stored.", kind="denied"
                )
            raise ConnectError(400, "Atlassian reported an error", f"{desc}. Nothing was stored.", kind="error")
        if not state or stored is None:
            raise ConnectError(
                400,
                "Unknown or already used state",
                "This link is not one this connector issued, or it was already used. Start again from "
                f"{ADD_PATH}. Nothing was stored.",
                kind="state",
            )
        if stored["expires_at"] <= utcnow():
            raise ConnectError(
                400,
                "Expired state",
                f"The authorization took longer than 10 minutes. Start again from {ADD_PATH}. Nothing was stored.",
                kind="expired",
            )
        code = params.get("code")
        if not code:
            raise ConnectError(
                400, "No authorization code", "The callback carried no code. Nothing was stored.", kind="error"
            )
        try:
            tokens = exchange_code(self.oauth, code)
        except InvalidClient as exc:
            raise ConnectError(
                400, "Atlassian rejected the app's credentials", f"{exc} Nothing was stored.", kind="client"
            ) from None
        except AtlassianError as exc:
            raise ConnectError(
                400, "Exchanging the authorization code failed", f"{exc} Nothing was stored.", kind="exchange"
            ) from None
        try:
            sites = accessible_resources(self.oauth, tokens.access_token)
        except AtlassianError as exc:
            raise ConnectError(502, "Listing your Jira sites failed", f"{exc} Nothing was stored.") from None
        jira_sites = [s for s in sites if any("jira" in sc for sc in s.get("scopes") or [])] or sites
        if not jira_sites:
            raise ConnectError(
                400, "No Jira site", "This Atlassian account can reach no Jira Cloud site. Nothing was stored."
            )
        try:
            with JiraClient(
                self.oauth.api_url, jira_sites[0]["id"], _StaticToken(tokens.access_token), max_retries=2
            ) as client:
                account_id = streams.myself(client)["accountId"]
        except (AtlassianError, KeyError, TypeError) as exc:
            why = f"{exc}" if isinstance(exc, AtlassianError) else "the answer carried no accountId"
            raise ConnectError(502, "Reading your Jira profile failed", f"{why}. Nothing was stored.") from None
        try:
            self.grants.store_grant(account_id, tokens, jira_sites)
        except AtlassianError as exc:  # no refresh token: the app did not get offline_access
            raise ConnectError(400, "No refresh token", f"{exc} Nothing was stored.", kind="exchange") from None
        return ConnectResult(account_id, jira_sites)


class ConnectError(Exception):
    """A rejected callback: `status` and the human `title`/`detail` of the 4xx/5xx page.

    `kind` lets callers branch without parsing text: "state" (unknown or replayed), "expired",
    "denied" (the user said no), "client" (wrong client id/secret), "exchange", "error", "upstream".
    """

    def __init__(self, status: int, title: str, detail: str, *, kind: str = "upstream") -> None:
        super().__init__(f"{title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail
        self.kind = kind


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
        f"<body style='font-family: sans-serif; max-width: 40em; margin: 3em auto'>"
        f"<h1>{html.escape(title)}</h1>{body}</body></html>",
        status_code=status,
    )


def create_app(connector: Connector) -> Starlette:
    """The connector's routes. Handlers that touch the store or Atlassian run in the thread pool:
    they are blocking (SQLAlchemy, requests) and must not stall the event loop."""
    lock = threading.Lock()  # the code exchange is quick; serialising it keeps logs readable

    async def add(request: Request) -> Response:
        return RedirectResponse(await run_in_threadpool(connector.start), status_code=302)

    def _callback_sync(params: dict[str, str]) -> Response:
        with lock:
            try:
                result = connector.finish(params)
            except ConnectError as exc:
                return _page(exc.title, f"<p>{html.escape(exc.detail)}</p>", exc.status)
        items = "".join(
            f"<li>{html.escape(s.get('name') or s['id'])} — {html.escape(s.get('url', ''))} "
            f"(cloud id <code>{html.escape(s['id'])}</code>)</li>"
            for s in result.sites
        )
        return _page(
            "Jira connected",
            f"<p>AINexLayer can now read these Jira site(s):</p><ul>{items}</ul>"
            "<p>The next scheduled sync picks them up; you can close this page.</p>",
        )

    async def callback(request: Request) -> Response:
        return await run_in_threadpool(_callback_sync, dict(request.query_params))

    def _health() -> Response:
        warehouse = connector.grants.warehouse
        try:
            # A read of the grants table, not just `SELECT 1`: the app needs its token store, not any database.
            warehouse.get_grant("-healthz-")
            # A pooled SQLite connection keeps reading a database file that was deleted or replaced under it;
            # the next connection would find nothing, so a missing file is "unreachable" already now.
            db = warehouse.engine.url.database
            if warehouse.dialect == "sqlite" and db and db != ":memory:" and not Path(db).is_file():
                raise FileNotFoundError("the SQLite database file is gone")
        except Exception as exc:
            log.warning("healthz: the token store %s is unreachable (%s)", warehouse.safe_url, exc)
            return JSONResponse({"status": "unavailable", "error": type(exc).__name__}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def healthz(request: Request) -> Response:
        return await run_in_threadpool(_health)

    async def index(request: Request) -> Response:
        return _page("AINexLayer Jira connector", f"<p><a href='{ADD_PATH}'>Connect a Jira site</a></p>")

    return Starlette(
        routes=[
            Route("/", index),
            Route(ADD_PATH, add),
            Route(CALLBACK_PATH, callback),
            Route("/healthz", healthz),
        ]
    )
