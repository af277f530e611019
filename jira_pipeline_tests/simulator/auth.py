"""Atlassian's OAuth 2.0 (3LO) authorization server, as far as a connector can observe it.

Behaviours reproduced because clients get them wrong:

* Authorization codes are single use and live 10 minutes.
* Access tokens are opaque here (JWTs at Atlassian) and live `access_token_ttl` seconds; like
  JWTs they stay valid until they expire even if the grant is revoked meanwhile.
* Refresh tokens rotate on every refresh. The presented token keeps working for
  `refresh_leeway` seconds after it was first rotated (Atlassian: ~10 minutes), so a client that
  lost a response can retry. Presenting it after that looks like token theft: the *whole grant
  family* is revoked and every token of it answers ``403 invalid_grant`` from then on.
* Grants expire after 90 days without a refresh and 365 days after consent.
* A refresh may answer without ``refresh_token`` (`omit_refresh_token`); the old one then stays
  the current one, and clients must keep it.
* `hang_seconds` makes a refresh rotate first and answer late, so a client's read timeout leaves
  it not knowing whether the token it holds is still current.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from .config import SimConfig
from .model import DAY_MS, Clock

AUDIENCE = "api.atlassian.com"
REQUIRED_SCOPES = ("offline_access", "read:jira-work")
CODE_TTL_MS = 10 * 60 * 1000
INACTIVE_EXPIRY_MS = 90 * DAY_MS
ABSOLUTE_EXPIRY_MS = 365 * DAY_MS

INVALID_GRANT = {"error": "invalid_grant", "error_description": "Unknown or invalid refresh token."}
UNAUTHORIZED_CLIENT = {"error": "access_denied", "error_description": "Unauthorized"}


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    scope: str
    expires_ms: int
    used: bool = False


@dataclass
class Grant:
    """A grant family: one consent, all the refresh/access tokens derived from it."""

    id: str
    client_id: str
    scope: str
    created_ms: int
    last_used_ms: int
    current: str | None = None
    dead: str | None = None  # None | "revoked" | "expired"
    refresh_tokens: list[str] = field(default_factory=list)


@dataclass
class _Refresh:
    grant_id: str
    issued_ms: int
    superseded_ms: int | None = None


@dataclass
class AccessToken:
    grant_id: str
    scope: frozenset[str]
    expires_ms: int


@dataclass
class TokenResult:
    status: int
    body: dict[str, Any]
    hang_seconds: float = 0.0


class AuthServer:
    """State of the authorization server; all methods are thread-safe."""

    def __init__(self, cfg: SimConfig, clock: Clock, stats: Any) -> None:
        self.cfg = cfg
        self.clock = clock
        self.stats = stats
        self.lock = threading.RLock()
        self.codes: dict[str, _Code] = {}
        self.grants: dict[str, Grant] = {}
        self.refresh_tokens: dict[str, _Refresh] = {}
        self.access_tokens: dict[str, AccessToken] = {}
        self.token_ttl = cfg.access_token_ttl
        self.refresh_leeway = cfg.refresh_leeway
        self.consent_mode = "allow"
        self.hang_seconds = 0.0
        self.omit_refresh_token = False

    # ------------------------------------------------------------------ /authorize
    def authorize(self, params: dict[str, str]) -> tuple[int, str, str | None]:
        """Returns (status, text body, Location). Errors are 400 pages, as Atlassian shows them."""
        client_id = params.get("client_id", "")
        redirect_uri = params.get("redirect_uri", "")
        if client_id != self.cfg.client_id:
            return 400, "Invalid client_id: the app does not exist or was deleted.", None
        if redirect_uri not in self.cfg.redirect_uris:
            return 400, "The redirect_uri does not match any callback URL registered for this app.", None
        if params.get("audience") != AUDIENCE:
            return 400, f"Invalid audience: expected {AUDIENCE}.", None
        if params.get("response_type") != "code":
            return 400, "Unsupported response_type: expected code.", None
        scopes = params.get("scope", "").split()
        missing = [s for s in REQUIRED_SCOPES if s not in scopes]
        if missing:
            return 400, f"Invalid scope: missing {' '.join(missing)}.", None
        state = params.get("state")
        if self.consent_mode == "deny":
            q = {"error": "access_denied", "error_description": "User did not authorize the request"}
        else:
            code = secrets.token_urlsafe(24)
            with self.lock:
                self.codes[code] = _Code(
                    client_id, redirect_uri, " ".join(scopes), self.clock.now_ms() + CODE_TTL_MS
                )
            q = {"code": code}
        if state is not None:
            q["state"] = state
        sep = "&" if "?" in redirect_uri else "?"
        return 302, "", f"{redirect_uri}{sep}{urlencode(q)}"

    # ------------------------------------------------------------------ /oauth/token
    def token(self, params: dict[str, Any]) -> TokenResult:
        grant_type = params.get("grant_type")
        if grant_type not in ("authorization_code", "refresh_token"):
            return TokenResult(
                400,
                {
                    "error": "unsupported_grant_type",
                    "error_description": f"Unsupported grant type: {grant_type}",
                },
            )
        if (
            params.get("client_id") != self.cfg.client_id
            or params.get("client_secret") != self.cfg.client_secret
        ):
            return TokenResult(401, dict(UNAUTHORIZED_CLIENT))
        if grant_type == "authorization_code":
            return self._exchange(params)
        return self._refresh(params)

    def _exchange(self, params: dict[str, Any]) -> TokenResult:
        now = self.clock.now_ms()
        with self.lock:
            code = self.codes.get(str(params.get("code", "")))
            if code is None or code.used or code.expires_ms <= now:
                return TokenResult(
                    403, {"error": "invalid_grant", "error_description": "Invalid authorization code"}
                )
            if params.get("redirect_uri") != code.redirect_uri:
                return TokenResult(
                    403,
                    {
                        "error": "invalid_grant",
                        "error_description": "redirect_uri does not match the authorization request",
                    },
                )
            code.used = True
            grant = Grant(secrets.token_hex(8), code.client_id, code.scope, now, now)
            self.grants[grant.id] = grant
            self.stats.incr("code_exchanges")
            return TokenResult(200, self._issue(grant, now, rotate=True))

    def _refresh(self, params: dict[str, Any]) -> TokenResult:
        now = self.clock.now_ms()
        presented = str(params.get("refresh_token", ""))
        with self.lock:
            rt = self.refresh_tokens.get(presented)
            grant = self.grants.get(rt.grant_id) if rt else None
            if rt is None or grant is None:
                self.stats.incr("refresh_failures")
                return TokenResult(403, dict(INVALID_GRANT))
            if grant.dead is None and (
                now - grant.last_used_ms > INACTIVE_EXPIRY_MS or now - grant.created_ms > ABSOLUTE_EXPIRY_MS
            ):
                grant.dead = "expired"
            if grant.dead is not None:
                self.stats.incr("refresh_failures")
                return TokenResult(403, dict(INVALID_GRANT))
            if rt.superseded_ms is not None and now >= rt.superseded_ms + self.refresh_leeway * 1000:
                # reuse of a rotated token after the leeway: treat as stolen, kill the family
                grant.dead = "revoked"
                self.stats.incr("revoked_grants")
                self.stats.incr("refresh_failures")
                return TokenResult(403, dict(INVALID_GRANT))
            body = self._issue(grant, now, rotate=not self.omit_refresh_token)
            grant.last_used_ms = now
            self.stats.incr("token_refreshes")
            return TokenResult(200, body, self.hang_seconds)

    def _issue(self, grant: Grant, now: int, rotate: bool) -> dict[str, Any]:
        access = "sim_at_" + secrets.token_urlsafe(32)
        scopes = frozenset(grant.scope.split())
        self.access_tokens[access] = AccessToken(grant.id, scopes, now + self.token_ttl * 1000)
        body: dict[str, Any] = {
            "access_token": access,
            "expires_in": self.token_ttl,
            "token_type": "Bearer",
            "scope": grant.scope,
        }
        if rotate and "offline_access" in scopes:
            new = "sim_rt_" + secrets.token_urlsafe(32)
            if grant.current is not None:
                old = self.refresh_tokens[grant.current]
                if old.superseded_ms is None:
                    old.superseded_ms = now
            self.refresh_tokens[new] = _Refresh(grant.id, now)
            grant.current = new
            grant.refresh_tokens.append(new)
            body["refresh_token"] = new
        return body

    # ------------------------------------------------------------------ bearer checks
    def check_access(self, header: str | None) -> AccessToken | None:
        if not header or not header.startswith("Bearer "):
            return None
        token = header[7:].strip()
        with self.lock:
            at = self.access_tokens.get(token)
        if at is None or at.expires_ms <= self.clock.now_ms():
            return None
        return at

    # ------------------------------------------------------------------ knobs
    def revoke_all(self) -> int:
        with self.lock:
            n = 0
            for g in self.grants.values():
                if g.dead is None:
                    g.dead = "revoked"
                    n += 1
            self.stats.incr("revoked_grants", n)
            return n

    def expire_all(self) -> int:
        with self.lock:
            n = 0
            for g in self.grants.values():
                if g.dead is None:
                    g.dead = "expired"
                    n += 1
            return n

    def live_grants(self) -> list[Grant]:
        with self.lock:
            return [g for g in self.grants.values() if g.dead is None]
