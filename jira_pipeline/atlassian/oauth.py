"""OAuth 2.0 (3LO) against Atlassian: authorize URL, code exchange, refresh, site discovery.

Pure functions over HTTP, no storage: persisting the rotated refresh token under a lock is the job
of `jira_pipeline.grants`. What this module guarantees is that every failure comes back as a typed
error the caller can act on without parsing text (see `errors.py`):

* `ReconsentRequired`: the grant is dead (`invalid_grant`, `unauthorized_client` with
  "refresh_token is invalid", expired grants). Only a new consent helps.
* `InvalidClient`: ATLASSIAN_CLIENT_ID / ATLASSIAN_CLIENT_SECRET are wrong.
* `AmbiguousRefresh`: a refresh may have been processed but we did not see the answer. Because
  Atlassian rotates refresh tokens on every use and revokes the whole grant when an old token is
  replayed after ~10 minutes, the caller must re-read its store rather than resend the old token.
* `OAuthError(retryable=True)`: provably nothing reached the server (connection refused, connect
  timeout, TLS handshake failure, 429); sending the same request again is safe.

Tokens, codes and the client secret never appear in messages, reprs or logs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

import requests
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError

from .errors import (
    RECONNECT_HINT,
    AmbiguousRefresh,
    AtlassianError,
    InvalidClient,
    OAuthError,
    ReconsentRequired,
)

__all__ = [
    "DEFAULT_SCOPES",
    "AmbiguousRefresh",
    "AtlassianError",
    "InvalidClient",
    "OAuthConfig",
    "OAuthError",
    "ReconsentRequired",
    "TokenSet",
    "accessible_resources",
    "authorization_url",
    "exchange_code",
    "refresh_access_token",
]

DEFAULT_SCOPES: tuple[str, ...] = ("read:jira-work", "read:jira-user", "offline_access")
"""`offline_access` is what makes Atlassian issue a refresh token at all."""

AUDIENCE = "api.atlassian.com"
_CLIENT_HINT = "Check ATLASSIAN_CLIENT_ID / ATLASSIAN_CLIENT_SECRET against the Atlassian developer console."
# OAuth error codes that mean "this grant (or code) is unusable": the user has to consent again.
_DEAD_GRANT_ERRORS = frozenset({"invalid_grant", "unauthorized_client"})
# Codes/statuses that mean "the token endpoint does not accept our client credentials".
# Atlassian answers a wrong secret with 401 {"error": "access_denied", "error_description": "Unauthorized"}.
_BAD_CLIENT_ERRORS = frozenset({"invalid_client", "access_denied"})


@dataclass(frozen=True)
class OAuthConfig:
    """The registered 3LO app. The secret is excluded from repr so configs can be logged."""

    client_id: str
    client_secret: str = field(repr=False)
    redirect_uri: str
    auth_url: str = "https://auth.atlassian.com"
    api_url: str = "https://api.atlassian.com"
    scopes: tuple[str, ...] = DEFAULT_SCOPES

    @property
    def token_endpoint(self) -> str:
        return f"{self.auth_url.rstrip('/')}/oauth/token"


@dataclass(frozen=True)
class TokenSet:
    """One answer of the token endpoint.

    `refresh_token` is None when Atlassian did not send one (it may omit it on refresh): the caller
    must then keep the refresh token it already has. `expires_at` is timezone-aware UTC, computed
    from `expires_in` at the moment the answer arrived.
    """

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_at: datetime
    scopes: tuple[str, ...]
    token_type: str = "Bearer"  # noqa: S105 - a scheme name, not a secret

    def expires_within(self, seconds: float, *, now: datetime | None = None) -> bool:
        """True when the access token is expired or will be within `seconds` (refresh leeway)."""
        current = now or datetime.now(UTC)
        return self.expires_at - current <= timedelta(seconds=seconds)


def authorization_url(cfg: OAuthConfig, state: str) -> str:
    """The consent page URL. `prompt=consent` forces the consent screen so a re-connect always
    yields a fresh grant (and a refresh token) even if the user consented before."""
    params = {
        "audience": AUDIENCE,
        "client_id": cfg.client_id,
        "scope": " ".join(cfg.scopes),
        "redirect_uri": cfg.redirect_uri,
        "state": state,
        "response_type": "code",
        "prompt": "consent",
    }
    # quote (not quote_plus): Atlassian's docs encode the scope separator as %20.
    return f"{cfg.auth_url.rstrip('/')}/authorize?{urlencode(params, quote_via=quote)}"


def exchange_code(
    cfg: OAuthConfig,
    code: str,
    *,
    session: requests.Session | None = None,
    timeout: float = 30,
) -> TokenSet:
    """Trade the authorization code from the callback for tokens.

    Codes are single use, so after a timeout or 5xx the code may be spent: the error is not
    retryable and the operator has to start the consent again.
    """
    body = {
        "grant_type": "authorization_code",
        "client_id": cfg.client_id,
        "client_secret": cfg.client_secret,
        "code": code,
        "redirect_uri": cfg.redirect_uri,
    }
    return _token_request(cfg, body, secrets=(cfg.client_secret, code), refresh=False, session=session, timeout=timeout)


def refresh_access_token(
    cfg: OAuthConfig,
    refresh_token: str,
    *,
    session: requests.Session | None = None,
    timeout: float = 30,
) -> TokenSet:
    """Use (and thereby rotate) a refresh token. See module doc for the error contract."""
    body = {
        "grant_type": "refresh_token",
        "client_id": cfg.client_id,
        "client_secret": cfg.client_secret,
        "refresh_token": refresh_token,
    }
    return _token_request(
        cfg, body, secrets=(cfg.client_secret, refresh_token), refresh=True, session=session, timeout=timeout
    )


def accessible_resources(
    cfg: OAuthConfig,
    access_token: str,
    *,
    session: requests.Session | None = None,
    timeout: float = 30,
) -> list[dict[str, Any]]:
    """Sites (cloud ids) the grant reaches, in no particular order (Atlassian does not sort them).

    A read-only GET, so every transport failure is retryable.
    """
    url = f"{cfg.api_url.rstrip('/')}/oauth/token/accessible-resources"
    http = session if session is not None else requests
    try:
        resp = http.get(
            url,
            headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
            timeout=timeout,
        )
    except requests.RequestException as exc:
        raise OAuthError(
            f"Could not reach {_endpoint(url)} ({_describe_exc(exc)}); safe to retry.", retryable=True
        ) from None
    if resp.status_code != 200:
        err, desc = _oauth_error_fields(resp, (access_token,))
        what = "the access token was rejected (expired or revoked)" if resp.status_code == 401 else "failed"
        raise OAuthError(
            f"GET /oauth/token/accessible-resources {what}: HTTP {resp.status_code}{_fmt(err, desc)}",
            status=resp.status_code,
            error=err,
            error_description=desc,
            retryable=resp.status_code in (429, 500, 502, 503, 504),
        )
    try:
        data = resp.json()
    except ValueError:
        data = None
    if not isinstance(data, list):
        raise OAuthError(
            f"GET /oauth/token/accessible-resources answered HTTP 200 with an unexpected body "
            f"(expected a JSON array): {_snippet(resp.text, (access_token,))}",
            status=200,
            retryable=True,
        )
    return data


# --------------------------------------------------------------------------------------------- internals


def _token_request(
    cfg: OAuthConfig,
    body: dict[str, str],
    *,
    secrets: tuple[str, ...],
    refresh: bool,
    session: requests.Session | None,
    timeout: float,
) -> TokenSet:
    url = cfg.token_endpoint
    op = "token refresh" if refresh else "authorization code exchange"
    http = session if session is not None else requests
    try:
        resp = http.post(url, json=body, headers={"Accept": "application/json"}, timeout=timeout)
    except requests.RequestException as exc:
        if _nothing_sent(exc):
            raise OAuthError(
                f"{op} could not reach {_endpoint(url)} ({_describe_exc(exc)}); nothing was sent, safe to retry.",
                retryable=True,
            ) from None
        if refresh:
            raise AmbiguousRefresh(
                f"{op}: the request may have reached {_endpoint(url)} but no answer came back "
                f"({_describe_exc(exc)}). The refresh token may already have rotated: re-read the "
                "token store before trying again; do not replay the old refresh token.",
            ) from None
        raise OAuthError(
            f"{op}: no answer from {_endpoint(url)} ({_describe_exc(exc)}); the authorization code "
            f"may be spent. {RECONNECT_HINT}",
        ) from None

    status = resp.status_code
    if status == 200:
        return _parse_token_answer(resp, secrets=secrets, refresh=refresh, op=op)

    err, desc = _oauth_error_fields(resp, secrets)
    detail = f"{op} failed: HTTP {status}{_fmt(err, desc)}."
    kwargs: dict[str, Any] = {"status": status, "error": err, "error_description": desc}
    if err in _BAD_CLIENT_ERRORS or (status == 401 and err not in _DEAD_GRANT_ERRORS):
        raise InvalidClient(f"{detail} The client credentials were rejected. {_CLIENT_HINT}", **kwargs)
    if err in _DEAD_GRANT_ERRORS or _mentions_dead_token(desc):
        what = "The grant is no longer valid (revoked, expired, or its refresh token was already used)"
        if not refresh:
            what = "The authorization code is invalid, expired or already used"
        raise ReconsentRequired(f"{detail} {what}. {RECONNECT_HINT}", **kwargs)
    if status == 429:
        raise OAuthError(f"{detail} Rate limited by the token endpoint; safe to retry later.", retryable=True, **kwargs)
    if status >= 500:
        if refresh:
            raise AmbiguousRefresh(
                f"{detail} The server may have rotated the refresh token before failing: re-read the "
                "token store before trying again; do not replay the old refresh token.",
                **kwargs,
            )
        raise OAuthError(f"{detail} {RECONNECT_HINT}", **kwargs)
    raise OAuthError(detail, **kwargs)


def _parse_token_answer(resp: requests.Response, *, secrets: tuple[str, ...], refresh: bool, op: str) -> TokenSet:
    try:
        data = resp.json()
    except ValueError:
        data = None
    access = data.get("access_token") if isinstance(data, dict) else None
    if not isinstance(access, str) or not access:
        # Never echo the body: a half-valid answer may well contain a token.
        msg = f"{op}: HTTP 200 without a usable access_token (body of {len(resp.content)} bytes withheld)."
        if refresh:
            raise AmbiguousRefresh(
                msg + " The refresh token may have rotated: re-read the token store before trying again.",
                status=200,
            )
        raise OAuthError(msg, status=200)
    assert isinstance(data, dict)
    try:
        expires_in = float(data.get("expires_in", 3600))
    except (TypeError, ValueError):
        expires_in = 3600.0
    scope = data.get("scope") or ""
    scopes = tuple(scope.split()) if isinstance(scope, str) else tuple(str(s) for s in scope)
    rt = data.get("refresh_token")
    return TokenSet(
        access_token=access,
        refresh_token=rt if isinstance(rt, str) and rt else None,
        expires_at=datetime.now(UTC) + timedelta(seconds=expires_in),
        scopes=scopes,
        token_type=str(data.get("token_type") or "Bearer"),
    )


def _nothing_sent(exc: requests.RequestException) -> bool:
    """True when the failure provably happened before the request left this machine.

    Connection refused, DNS failure, connect timeout and TLS handshake errors qualify. A dropped
    connection ("Connection aborted", RemoteDisconnected), a read timeout or a broken chunked body
    do not: the server may have processed the request.
    """
    if isinstance(exc, requests.exceptions.ConnectTimeout | requests.exceptions.SSLError):
        return True
    if isinstance(exc, requests.exceptions.ProxyError):
        return True
    if isinstance(exc, requests.ConnectionError) and not isinstance(exc, requests.exceptions.ReadTimeout):
        reason: object = exc.args[0] if exc.args else None
        if isinstance(reason, MaxRetryError):
            reason = reason.reason
        return isinstance(reason, NewConnectionError | ConnectTimeoutError)
    return False


def _describe_exc(exc: BaseException) -> str:
    """Exception class plus urllib3's innermost reason; requests' texts hold host/port, never bodies."""
    reason: object = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError) and reason.reason is not None:
        reason = reason.reason
    inner = type(reason).__name__ if isinstance(reason, BaseException) else None
    name = type(exc).__name__
    return f"{name}: {inner}" if inner and inner != name else name


def _endpoint(url: str) -> str:
    return url.split("?", 1)[0]


def _oauth_error_fields(resp: requests.Response, secrets: tuple[str, ...]) -> tuple[str | None, str | None]:
    """Atlassian's `error` and `error_description` (or `message`), scrubbed of anything we sent."""
    try:
        data = resp.json()
    except ValueError:
        text = resp.text.strip()
        return None, (_scrub(text[:200], secrets) if text else None)
    if not isinstance(data, dict):
        return None, _scrub(json.dumps(data)[:200], secrets)
    err = data.get("error")
    desc = data.get("error_description") or data.get("message")
    return (
        _scrub(str(err), secrets)[:100] if err is not None else None,
        _scrub(str(desc), secrets)[:300] if desc is not None else None,
    )


def _mentions_dead_token(desc: str | None) -> bool:
    d = (desc or "").lower()
    return "refresh_token" in d and any(w in d for w in ("invalid", "expired", "revoked"))


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    for s in secrets:
        if s and len(s) >= 4:
            text = text.replace(s, "[redacted]")
    return text


def _snippet(text: str, secrets: tuple[str, ...]) -> str:
    return repr(_scrub(text[:120], secrets))


def _fmt(err: str | None, desc: str | None) -> str:
    if err and desc:
        return f" ({err}: {desc})"
    if err or desc:
        return f" ({err or desc})"
    return ""
