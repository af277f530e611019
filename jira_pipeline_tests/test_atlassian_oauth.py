"""OAuth 3LO unit tests: `responses` for HTTP answers, real sockets for transport failures (their
exception shapes are what the ambiguity classification depends on, so they are not mocked)."""

from __future__ import annotations

import socket
import threading
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from jira_pipeline.atlassian import (
    AmbiguousRefresh,
    AtlassianError,
    InvalidClient,
    OAuthConfig,
    OAuthError,
    ReconsentRequired,
    TokenSet,
    accessible_resources,
    authorization_url,
    exchange_code,
    refresh_access_token,
)

SECRET = "s3cr3t-client-secret-value"
CODE = "auth-code-0123456789"
REFRESH = "refresh-token-abcdefghij"
ACCESS = "access-token-klmnopqrst"
NEW_REFRESH = "rotated-refresh-token-uvwxyz"
ALL_SECRETS = (SECRET, CODE, REFRESH, ACCESS, NEW_REFRESH)

AUTH = "https://auth.example.test"
API = "https://api.example.test"
TOKEN_URL = f"{AUTH}/oauth/token"


def cfg(auth_url: str = AUTH, api_url: str = API) -> OAuthConfig:
    return OAuthConfig(
        client_id="my-client-id",
        client_secret=SECRET,
        redirect_uri="http://localhost:8000/api/v1/auth/jira/connector/callback",
        auth_url=auth_url,
        api_url=api_url,
    )


def assert_no_secrets(exc: BaseException) -> None:
    texts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    for text in texts:
        for secret in ALL_SECRETS:
            assert secret not in text, f"secret leaked into {text!r}"


# ------------------------------------------------------------------------------------- config / url


def test_authorization_url_carries_every_3lo_parameter() -> None:
    url = authorization_url(cfg(), "state-xyz")
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{AUTH}/authorize"
    q = parse_qs(parts.query, strict_parsing=True)
    assert q == {
        "audience": ["api.atlassian.com"],
        "client_id": ["my-client-id"],
        "scope": ["read:jira-work read:jira-user offline_access"],
        "redirect_uri": ["http://localhost:8000/api/v1/auth/jira/connector/callback"],
        "state": ["state-xyz"],
        "response_type": ["code"],
        "prompt": ["consent"],
    }
    assert "scope=read%3Ajira-work%20read%3Ajira-user%20offline_access" in parts.query
    assert SECRET not in url


def test_reprs_hide_secret_and_tokens() -> None:
    ts = TokenSet(ACCESS, REFRESH, datetime.now(UTC), ("read:jira-work",))
    for text in (repr(cfg()), repr(ts), str(ts)):
        for secret in ALL_SECRETS:
            assert secret not in text
    assert "my-client-id" in repr(cfg())


# ------------------------------------------------------------------------------------ token endpoint


@responses.activate
def test_exchange_code_posts_json_and_parses_tokens() -> None:
    responses.post(
        TOKEN_URL,
        json={
            "access_token": ACCESS,
            "refresh_token": REFRESH,
            "expires_in": 3600,
            "scope": "read:jira-work offline_access read:jira-user",
            "token_type": "Bearer",
        },
        match=[
            responses.matchers.json_params_matcher(
                {
                    "grant_type": "authorization_code",
                    "client_id": "my-client-id",
                    "client_secret": SECRET,
                    "code": CODE,
                    "redirect_uri": "http://localhost:8000/api/v1/auth/jira/connector/callback",
                }
            )
        ],
    )
    before = datetime.now(UTC)
    ts = exchange_code(cfg(), CODE)
    assert ts.access_token == ACCESS and ts.refresh_token == REFRESH
    assert ts.expires_at.tzinfo is not None and ts.expires_at.utcoffset() == timedelta(0)
    assert before + timedelta(seconds=3599) <= ts.expires_at <= datetime.now(UTC) + timedelta(seconds=3601)
    assert set(ts.scopes) == {"read:jira-work", "read:jira-user", "offline_access"}
    assert not ts.expires_within(600)
    assert ts.expires_within(600, now=ts.expires_at - timedelta(seconds=300))


@responses.activate
def test_refresh_without_refresh_token_in_answer_gives_none() -> None:
    responses.post(
        TOKEN_URL,
        json={"access_token": ACCESS, "expires_in": 900, "scope": "read:jira-work"},
        match=[
            responses.matchers.json_params_matcher(
                {
                    "grant_type": "refresh_token",
                    "client_id": "my-client-id",
                    "client_secret": SECRET,
                    "refresh_token": REFRESH,
                }
            )
        ],
    )
    ts = refresh_access_token(cfg(), REFRESH)
    assert ts.access_token == ACCESS
    assert ts.refresh_token is None  # caller keeps the old one
    assert ts.expires_at - datetime.now(UTC) <= timedelta(seconds=900)


@responses.activate
def test_refresh_returns_rotated_token() -> None:
    responses.post(TOKEN_URL, json={"access_token": ACCESS, "refresh_token": NEW_REFRESH, "expires_in": 3600})
    assert refresh_access_token(cfg(), REFRESH).refresh_token == NEW_REFRESH


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (403, {"error": "invalid_grant", "error_description": "Unknown or invalid refresh token."}),
        (403, {"error": "unauthorized_client", "error_description": "refresh_token is invalid"}),
        (400, {"error": "invalid_request", "error_description": "refresh_token is expired"}),
    ],
)
@responses.activate
def test_dead_grant_means_reconsent_with_remedy(status: int, body: dict[str, str]) -> None:
    responses.post(TOKEN_URL, status=status, json=body)
    with pytest.raises(ReconsentRequired) as info:
        refresh_access_token(cfg(), REFRESH)
    exc = info.value
    assert isinstance(exc, OAuthError) and isinstance(exc, AtlassianError)
    assert "Run `jira-pipeline connect` to consent again." in str(exc)
    assert f"HTTP {status}" in str(exc)
    assert body["error"] in str(exc) and body["error_description"] in str(exc)
    assert exc.status == status and exc.error == body["error"] and not exc.retryable
    assert_no_secrets(exc)


@responses.activate
def test_exchange_with_used_code_is_reconsent() -> None:
    responses.post(
        TOKEN_URL, status=403, json={"error": "invalid_grant", "error_description": "Invalid code"}
    )
    with pytest.raises(ReconsentRequired, match="authorization code is invalid") as info:
        exchange_code(cfg(), CODE)
    assert_no_secrets(info.value)


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (401, {"error": "access_denied", "error_description": "Unauthorized"}),
        (401, {"error": "invalid_client", "error_description": "Client authentication failed"}),
        (401, None),
    ],
)
@responses.activate
def test_bad_client_credentials_name_the_env_vars(status: int, body: dict[str, str] | None) -> None:
    responses.post(TOKEN_URL, status=status, json=body)
    with pytest.raises(InvalidClient) as info:
        refresh_access_token(cfg(), REFRESH)
    assert "ATLASSIAN_CLIENT_ID" in str(info.value) and "ATLASSIAN_CLIENT_SECRET" in str(info.value)
    assert "HTTP 401" in str(info.value)
    assert_no_secrets(info.value)


@responses.activate
def test_error_description_echoing_a_secret_is_scrubbed() -> None:
    responses.post(
        TOKEN_URL,
        status=403,
        json={"error": "invalid_grant", "error_description": f"token {REFRESH} unknown for secret {SECRET}"},
    )
    with pytest.raises(ReconsentRequired) as info:
        refresh_access_token(cfg(), REFRESH)
    assert "[redacted]" in str(info.value)
    assert_no_secrets(info.value)
    assert REFRESH not in (info.value.error_description or "")


@pytest.mark.parametrize("status", [500, 502, 503, 504])
@responses.activate
def test_refresh_5xx_is_ambiguous(status: int) -> None:
    responses.post(TOKEN_URL, status=status, body="upstream trouble")
    with pytest.raises(AmbiguousRefresh) as info:
        refresh_access_token(cfg(), REFRESH)
    assert f"HTTP {status}" in str(info.value) and "re-read" in str(info.value)
    assert not info.value.retryable
    assert_no_secrets(info.value)


@responses.activate
def test_refresh_garbled_200_is_ambiguous_and_body_withheld() -> None:
    responses.post(TOKEN_URL, status=200, body=f'{{"refresh_token": "{NEW_REFRESH}", "acc')
    with pytest.raises(AmbiguousRefresh) as info:
        refresh_access_token(cfg(), REFRESH)
    assert_no_secrets(info.value)


@responses.activate
def test_token_endpoint_429_is_retryable() -> None:
    responses.post(TOKEN_URL, status=429, json={"error": "rate_limited"})
    with pytest.raises(OAuthError) as info:
        refresh_access_token(cfg(), REFRESH)
    assert info.value.retryable and not isinstance(info.value, AmbiguousRefresh)


@responses.activate
def test_connect_timeout_is_retryable_not_ambiguous() -> None:
    responses.post(TOKEN_URL, body=requests.exceptions.ConnectTimeout("connect timed out"))
    with pytest.raises(OAuthError) as info:
        refresh_access_token(cfg(), REFRESH)
    assert info.value.retryable and not isinstance(info.value, AmbiguousRefresh)
    assert_no_secrets(info.value)


# ------------------------------------------------------------------ real sockets: transport failures


class RawServer:
    """A TCP listener on 127.0.0.1 that reads one HTTP request and then misbehaves."""

    def __init__(self, behaviour: str, hold: float = 2.0) -> None:
        self.behaviour = behaviour
        self.hold = hold
        self.requests: list[bytes] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.1)  # accept() polls so close() is prompt
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                data = b""
                try:
                    while b"\r\n\r\n" not in data:
                        data += conn.recv(65536)
                except OSError:
                    continue
                self.requests.append(data)
                if self.behaviour == "hang":
                    self._stop.wait(self.hold)
                # "drop": close right away without a byte of answer

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self.thread.join(5)


@pytest.fixture
def raw_server(request: pytest.FixtureRequest) -> Iterator[RawServer]:
    server = RawServer(request.param)
    try:
        yield server
    finally:
        server.close()


@pytest.mark.parametrize("raw_server", ["hang", "drop"], indirect=True)
def test_refresh_without_answer_is_ambiguous(raw_server: RawServer) -> None:
    with pytest.raises(AmbiguousRefresh) as info:
        refresh_access_token(cfg(auth_url=raw_server.url), REFRESH, timeout=0.5)
    assert raw_server.requests, "the request did reach the server"
    assert "do not replay" in str(info.value)
    assert not info.value.retryable
    assert_no_secrets(info.value)


@pytest.mark.parametrize("raw_server", ["hang"], indirect=True)
def test_exchange_without_answer_is_not_retryable(raw_server: RawServer) -> None:
    with pytest.raises(OAuthError) as info:
        exchange_code(cfg(auth_url=raw_server.url), CODE, timeout=0.5)
    assert not isinstance(info.value, AmbiguousRefresh) and not info.value.retryable
    assert "jira-pipeline connect" in str(info.value)
    assert_no_secrets(info.value)


def test_connection_refused_is_retryable() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nobody listens there now
    with pytest.raises(OAuthError) as info:
        refresh_access_token(cfg(auth_url=f"http://127.0.0.1:{port}"), REFRESH, timeout=2)
    assert info.value.retryable and not isinstance(info.value, AmbiguousRefresh)
    assert "nothing was sent" in str(info.value)
    assert_no_secrets(info.value)


# -------------------------------------------------------------------------------- accessible sites


@responses.activate
def test_accessible_resources_sends_bearer_and_returns_sites() -> None:
    sites = [
        {"id": "cloud-2", "name": "beta", "url": "https://beta.atlassian.net", "scopes": ["read:jira-work"]},
        {
            "id": "cloud-1",
            "name": "alpha",
            "url": "https://alpha.atlassian.net",
            "scopes": ["read:jira-work"],
        },
    ]
    responses.get(
        f"{API}/oauth/token/accessible-resources",
        json=sites,
        match=[responses.matchers.header_matcher({"Authorization": f"Bearer {ACCESS}"})],
    )
    assert accessible_resources(cfg(), ACCESS) == sites


@responses.activate
def test_accessible_resources_401_is_typed_and_clean() -> None:
    responses.get(f"{API}/oauth/token/accessible-resources", status=401, json={"message": "Unauthorized"})
    with pytest.raises(OAuthError) as info:
        accessible_resources(cfg(), ACCESS)
    assert info.value.status == 401 and "rejected" in str(info.value)
    assert_no_secrets(info.value)
