"""Starlette app that connects Jira sites through Atlassian OAuth 2.0 (3LO).

`state` is random, single-use and expires after ten minutes. It lives hashed in the table store,
not in memory, so the connector can restart, or run as several replicas, between /add and /callback.
Whatever goes wrong in /callback, nothing is stored unless the whole flow succeeded.
"""

from __future__ import annotations

import hashlib
import html
import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from starlette.applications import Starlette
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
    """The flow itself, shared by the web app and `jira-pipeline connect`."""

    grants: GrantManager
    on_connected: list[Callable[[ConnectResult], None]] = field(default_factory=list)

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
        state = params.get("state") or ""
        stored = self.grants.warehouse.consume_oauth_state(_hash_state(state)) if state else None
        if params.get("error"):
            desc = params.get("error_description") or params["error"]
            if params["error"] == "access_denied":
                raise ConnectError(403, "Access was not granted", f"Atlassian reports: {desc}. Nothing was stored.")
            raise ConnectError(400, "Atlassian reported an error", f"{desc}. Nothing was stored.")
        if not state or stored is None:
            raise ConnectError(
                400,
                "Unknown or already used state",
                "This link is not one this connector issued, or it was already used. Start again from "
                f"{ADD_PATH}. Nothing was stored.",
            )
        if stored["expires_at"] <= utcnow():
            raise ConnectError(
                400, "Expired state", f"The authorization took longer than 10 minutes. Start again from {ADD_PATH}."
            )
        code = params.get("code")
        if not code:
            raise ConnectError(400, "No authorization code", "The callback carried no code. Nothing was stored.")
        try:
            tokens = exchange_code(self.oauth, code)
        except InvalidClient as exc:
            raise ConnectError(400, "Atlassian rejected the app's credentials", str(exc)) from None
        except AtlassianError as exc:
            raise ConnectError(400, "Exchanging the authorization code failed", f"{exc} Nothing was stored.") from None
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
            client = JiraClient(
                self.oauth.api_url, jira_sites[0]["id"], _StaticToken(tokens.access_token), max_retries=2
            )
            account_id = streams.myself(client)["accountId"]
        except (AtlassianError, KeyError) as exc:
            raise ConnectError(502, "Reading your Jira profile failed", f"{exc} Nothing was stored.") from None
        self.grants.store_grant(account_id, tokens, jira_sites)
        result = ConnectResult(account_id, jira_sites)
        log.info("Connected Jira site(s) %s", ", ".join(s.get("name", s["id"]) for s in jira_sites))
        for callback in self.on_connected:
            callback(result)
        return result


class ConnectError(Exception):
    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(f"{title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
        f"<body style='font-family: sans-serif; max-width: 40em; margin: 3em auto'>"
        f"<h1>{html.escape(title)}</h1>{body}</body></html>",
        status_code=status,
    )


def create_app(connector: Connector) -> Starlette:
    lock = threading.Lock()  # the code exchange is quick; serialising it keeps logs readable

    async def add(request: Request) -> Response:
        return RedirectResponse(connector.start(), status_code=302)

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
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(_callback_sync, dict(request.query_params))

    async def healthz(request: Request) -> Response:
        try:
            connector.grants.warehouse.ping()
        except Exception as exc:
            return JSONResponse({"status": "unavailable", "error": type(exc).__name__}, status_code=503)
        return JSONResponse({"status": "ok"})

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
