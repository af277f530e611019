"""The simulator's authorization server and gateway behave like Atlassian's.

Covers: /authorize validation and consent modes, single-use codes, client authentication,
refresh-token rotation with leeway and family revocation, omitted refresh tokens, a hanging
refresh (client read timeout after rotation), access-token expiry, revoked/expired grants,
scope enforcement, and accessible-resources (shape, shuffled order).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from jira_pipeline_tests.simulator import SimConfig, Simulator
from jira_pipeline_tests.simulator.testing import JiraHttp, authorize_code, oauth_login, refresh

INVALID_GRANT = {"error": "invalid_grant", "error_description": "Unknown or invalid refresh token."}


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(SimConfig(seed=3, sites=3, issues=20, worklogs=30, users=12, projects=2)) as s:
        yield s
        assert s.errors == []


@pytest.fixture(autouse=True)
def _reset_knobs(sim: Simulator) -> Iterator[None]:
    yield
    sim.set_refresh_leeway(600)
    sim.set_token_ttl(3600)
    sim.consent_mode = "allow"
    sim.refresh_hang_seconds = 0
    sim.refresh_omit_refresh_token = False


def _authorize(sim: Simulator, **override: str) -> requests.Response:
    params = {
        "audience": "api.atlassian.com",
        "client_id": sim.cfg.client_id,
        "scope": "read:jira-work read:jira-user offline_access",
        "redirect_uri": sim.cfg.redirect_uris[0],
        "state": "s-123",
        "response_type": "code",
        "prompt": "consent",
    }
    params.update(override)
    return requests.get(f"{sim.url}/authorize", params=params, allow_redirects=False, timeout=10)


@pytest.mark.parametrize(
    "override",
    [
        {"client_id": "someone-else"},
        {"redirect_uri": "http://evil.example/callback"},
        {"audience": "example.com"},
        {"response_type": "token"},
        {"scope": "read:jira-work"},  # no offline_access: no refresh token possible
    ],
)
def test_authorize_rejects_bad_requests(sim: Simulator, override: dict[str, str]) -> None:
    r = _authorize(sim, **override)
    assert r.status_code == 400 and r.text


def test_authorize_allow_and_deny(sim: Simulator) -> None:
    r = _authorize(sim)
    assert r.status_code == 302
    loc = urlsplit(r.headers["Location"])
    assert f"{loc.scheme}://{loc.netloc}{loc.path}" == sim.cfg.redirect_uris[0]
    q = parse_qs(loc.query)
    assert q["state"] == ["s-123"] and len(q["code"][0]) >= 20
    sim.consent_mode = "deny"
    q = parse_qs(urlsplit(_authorize(sim).headers["Location"]).query)
    assert q["error"] == ["access_denied"] and q["state"] == ["s-123"] and q["error_description"]
    assert "code" not in q


def test_code_exchange_is_single_use_and_checks_client(sim: Simulator) -> None:
    code = authorize_code(sim)
    body = {
        "grant_type": "authorization_code",
        "client_id": sim.cfg.client_id,
        "client_secret": "wrong",
        "code": code,
        "redirect_uri": sim.cfg.redirect_uris[0],
    }
    r = requests.post(f"{sim.url}/oauth/token", json=body, timeout=10)
    assert r.status_code == 401
    assert r.json() == {"error": "access_denied", "error_description": "Unauthorized"}
    body["client_secret"] = sim.cfg.client_secret
    before = sim.stats.code_exchanges
    # form-encoded bodies are accepted too
    r = requests.post(f"{sim.url}/oauth/token", data=body, timeout=10)
    assert r.status_code == 200, r.text
    tok = r.json()
    assert set(tok) == {"access_token", "refresh_token", "expires_in", "scope", "token_type"}
    assert tok["token_type"] == "Bearer" and tok["expires_in"] == 3600
    assert set(tok["scope"].split()) == {"read:jira-work", "read:jira-user", "offline_access"}
    assert sim.stats.code_exchanges == before + 1
    again = requests.post(f"{sim.url}/oauth/token", json=body, timeout=10)
    assert again.status_code == 403 and again.json()["error"] == "invalid_grant"


def test_redirect_uri_must_match_at_exchange(sim: Simulator) -> None:
    code = authorize_code(sim)
    r = requests.post(
        f"{sim.url}/oauth/token",
        json={
            "grant_type": "authorization_code",
            "client_id": sim.cfg.client_id,
            "client_secret": sim.cfg.client_secret,
            "code": code,
            "redirect_uri": "http://localhost:9/other",
        },
        timeout=10,
    )
    assert r.status_code == 403


def test_rotation_leeway_and_family_revocation(sim: Simulator) -> None:
    tok = oauth_login(sim)
    rt0 = tok["refresh_token"]
    r1 = refresh(sim, rt0)
    assert r1.status_code == 200
    rt1 = r1.json()["refresh_token"]
    assert rt1 != rt0 and r1.json()["access_token"] != tok["access_token"]
    # within the leeway the rotated token still works (a client may have lost the response)
    sim.advance(300)
    r2 = refresh(sim, rt0)
    assert r2.status_code == 200
    rt2 = r2.json()["refresh_token"]
    revoked_before = sim.stats.revoked_grants
    # after the leeway: reuse of rt0 kills the whole family, even the newest token
    sim.advance(301)
    r3 = refresh(sim, rt0)
    assert r3.status_code == 403 and r3.json() == INVALID_GRANT
    assert sim.stats.revoked_grants == revoked_before + 1
    for rt in (rt1, rt2):
        r = refresh(sim, rt)
        assert r.status_code == 403 and r.json() == INVALID_GRANT


def test_current_token_keeps_working_after_leeway(sim: Simulator) -> None:
    rt = oauth_login(sim)["refresh_token"]
    for _ in range(3):
        sim.advance(900)
        r = refresh(sim, rt)
        assert r.status_code == 200
        rt = r.json()["refresh_token"]


def test_zero_leeway_kills_rotated_token_at_once(sim: Simulator) -> None:
    sim.set_refresh_leeway(0)
    rt0 = oauth_login(sim)["refresh_token"]
    rt1 = refresh(sim, rt0).json()["refresh_token"]
    assert refresh(sim, rt0).status_code == 403
    assert refresh(sim, rt1).status_code == 403  # family revoked


def test_refresh_may_omit_refresh_token(sim: Simulator) -> None:
    rt = oauth_login(sim)["refresh_token"]
    sim.refresh_omit_refresh_token = True
    r = refresh(sim, rt)
    assert r.status_code == 200 and "refresh_token" not in r.json()
    sim.refresh_omit_refresh_token = False
    sim.advance(3600)  # far past the leeway: the old token is still the current one
    r = refresh(sim, rt)
    assert r.status_code == 200 and r.json()["refresh_token"] != rt


def test_hanging_refresh_rotates_before_answering(sim: Simulator) -> None:
    rt0 = oauth_login(sim)["refresh_token"]
    sim.refresh_hang_seconds = 0.6
    with pytest.raises(requests.exceptions.ReadTimeout):
        refresh(sim, rt0, timeout=0.2)
    sim.refresh_hang_seconds = 0
    time.sleep(0.5)
    # the server rotated: rt0 is now a superseded token, alive only within the leeway
    sim.advance(601)
    assert refresh(sim, rt0).status_code == 403


def test_wrong_client_secret_on_refresh(sim: Simulator) -> None:
    rt = oauth_login(sim)["refresh_token"]
    r = requests.post(
        f"{sim.url}/oauth/token",
        json={
            "grant_type": "refresh_token",
            "client_id": sim.cfg.client_id,
            "client_secret": "nope",
            "refresh_token": rt,
        },
        timeout=10,
    )
    assert r.status_code == 401 and r.json()["error"] == "access_denied"
    assert refresh(sim, rt).status_code == 200  # the failed attempt did not consume the token


def test_unknown_grant_type(sim: Simulator) -> None:
    r = requests.post(
        f"{sim.url}/oauth/token",
        json={
            "grant_type": "password",
            "client_id": sim.cfg.client_id,
            "client_secret": sim.cfg.client_secret,
        },
        timeout=10,
    )
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"


def test_revoked_and_expired_grants(sim: Simulator) -> None:
    rt_a = oauth_login(sim)["refresh_token"]
    assert sim.revoke_all_grants() >= 1
    assert refresh(sim, rt_a).json() == INVALID_GRANT
    rt_b = oauth_login(sim)["refresh_token"]
    sim.expire_grants()
    assert refresh(sim, rt_b).status_code == 403
    rt_c = oauth_login(sim)["refresh_token"]
    sim.advance(91 * 86400)  # unused for 90 days
    assert refresh(sim, rt_c).status_code == 403


def test_access_token_expiry_and_gateway_401(sim: Simulator) -> None:
    sim.set_token_ttl(1)
    tok = oauth_login(sim)
    assert tok["expires_in"] == 1
    jira = JiraHttp(sim, tok["access_token"])
    assert jira.get("myself").status_code == 200
    sim.advance(2)
    r = jira.get("myself")
    assert r.status_code == 401 and r.json()["code"] == 401
    assert JiraHttp(sim, "not-a-token").get("field").status_code == 401
    r = requests.get(
        f"{sim.url}/oauth/token/accessible-resources",
        headers={"Authorization": f"Bearer {tok['access_token']}"},
        timeout=10,
    )
    assert r.status_code == 401


def test_scopes_are_enforced(sim: Simulator) -> None:
    tok = oauth_login(sim, scope="read:jira-work offline_access")
    jira = JiraHttp(sim, tok["access_token"])
    assert jira.get("field").status_code == 200
    r = jira.get("myself")  # needs read:jira-user
    assert r.status_code == 401 and "scope" in r.json()["message"]


def test_accessible_resources_shape_and_shuffle(sim: Simulator) -> None:
    tok = oauth_login(sim)
    orders = set()
    for _ in range(12):
        r = requests.get(
            f"{sim.url}/oauth/token/accessible-resources",
            headers={"Authorization": f"Bearer {tok['access_token']}"},
            timeout=10,
        )
        assert r.status_code == 200
        body = r.json()
        assert {s["id"] for s in body} == {s.cloud_id for s in sim.sites}
        for s in body:
            assert set(s) == {"id", "url", "name", "scopes", "avatarUrl"}
            assert s["url"] == f"https://{s['name']}.atlassian.net"
            assert set(s["scopes"]) == {"read:jira-work", "read:jira-user"}
        orders.add(tuple(s["id"] for s in body))
    assert len(orders) > 1, "site order must not be stable"


def test_refresh_counters(sim: Simulator) -> None:
    rt = oauth_login(sim)["refresh_token"]
    before = sim.stats.token_refreshes
    refresh(sim, rt)
    assert sim.stats.token_refreshes == before + 1
    assert sim.stats[("POST", "/oauth/token")] >= 2
