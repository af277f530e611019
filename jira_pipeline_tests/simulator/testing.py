"""Small helpers for tests that talk to a running simulator over plain HTTP."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from .server import Simulator

DEFAULT_SCOPES = "read:jira-work read:jira-user offline_access"


def authorize_code(sim: Simulator, scope: str = DEFAULT_SCOPES, state: str = "st8") -> str:
    """Walk `/authorize` (auto-consent) and return the authorization code from the redirect."""
    assert sim.url is not None, "start the simulator first"
    r = requests.get(
        f"{sim.url}/authorize",
        params={
            "audience": "api.atlassian.com",
            "client_id": sim.cfg.client_id,
            "scope": scope,
            "redirect_uri": sim.cfg.redirect_uris[0],
            "state": state,
            "response_type": "code",
            "prompt": "consent",
        },
        allow_redirects=False,
        timeout=10,
    )
    if r.status_code != 302:
        raise AssertionError(f"/authorize answered {r.status_code}: {r.text}")
    return parse_qs(urlsplit(r.headers["Location"]).query)["code"][0]


def oauth_login(sim: Simulator, scope: str = DEFAULT_SCOPES) -> dict[str, Any]:
    """Full 3LO dance; returns the token response (access_token, refresh_token, ...)."""
    code = authorize_code(sim, scope)
    r = requests.post(
        f"{sim.url}/oauth/token",
        json={
            "grant_type": "authorization_code",
            "client_id": sim.cfg.client_id,
            "client_secret": sim.cfg.client_secret,
            "code": code,
            "redirect_uri": sim.cfg.redirect_uris[0],
        },
        timeout=10,
    )
    r.raise_for_status()
    return r.json()


def refresh(sim: Simulator, refresh_token: str, timeout: float = 10) -> requests.Response:
    return requests.post(
        f"{sim.url}/oauth/token",
        json={
            "grant_type": "refresh_token",
            "client_id": sim.cfg.client_id,
            "client_secret": sim.cfg.client_secret,
            "refresh_token": refresh_token,
        },
        timeout=timeout,
    )


class JiraHttp:
    """A bearer-authenticated `requests.Session` bound to one site's REST v3 base on the gateway."""

    def __init__(self, sim: Simulator, access_token: str, cloud_id: str | None = None) -> None:
        self.sim = sim
        self.cloud_id = cloud_id or sim.sites[0].cloud_id
        self.base = f"{sim.url}/ex/jira/{self.cloud_id}/rest/api/3"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {access_token}"
        self.session.headers["Accept"] = "application/json"

    def get(self, path: str, **kw: Any) -> requests.Response:
        kw.setdefault("timeout", 30)
        return self.session.get(f"{self.base}/{path}", **kw)

    def post(self, path: str, body: Any, **kw: Any) -> requests.Response:
        kw.setdefault("timeout", 30)
        return self.session.post(f"{self.base}/{path}", json=body, **kw)

    def search_all(
        self, jql: str, fields: list[str] | None = None, max_results: int = 5000
    ) -> list[dict[str, Any]]:
        """Every issue of a search, following `nextPageToken`."""
        out: list[dict[str, Any]] = []
        token = None
        while True:
            body: dict[str, Any] = {"jql": jql, "maxResults": max_results, "fields": fields or ["id"]}
            if token:
                body["nextPageToken"] = token
            r = self.post("search/jql", body)
            r.raise_for_status()
            page = r.json()
            out.extend(page["issues"])
            if page["isLast"]:
                return out
            token = page["nextPageToken"]
