"""The simulator's Jira responses validate against the official OpenAPI spec (shared/jira/).

Endpoints covered (200 bodies, validated with the spec's own response schema):
``GET myself``, ``GET project/search`` (all expands, live+archived), ``GET users/search``,
``GET field``, ``GET/POST search/jql`` (id-only, key, ``*all`` + names/schema, paging),
``POST search/approximate-count``, ``POST issue/bulkfetch`` (``*all`` for every issue of the site
incl. the 200 KB description, ``*navigable``, explicit fields, expands, issueErrors),
``GET issue/{issueIdOrKey}``, ``GET issue/{issueIdOrKey}/comment``, ``POST comment/list``,
``GET worklog/updated``, ``GET worklog/deleted``, ``POST worklog/list`` (every worklog);
400 bodies against Jira's ErrorCollection. The gateway/auth endpoints are not
in the Jira spec; their shapes are checked in test_simulator_auth.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from jira_pipeline_tests.simulator import SimConfig, Simulator
from jira_pipeline_tests.simulator.spec import load_spec, response_errors, schema_validator
from jira_pipeline_tests.simulator.testing import JiraHttp, oauth_login

P = "/rest/api/3/"


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(
        SimConfig(seed=7, issues=240, worklogs=700, users=30, projects=4, user_timezone="America/Los_Angeles")
    ) as s:
        yield s
        assert s.errors == []


@pytest.fixture(scope="module")
def jira(sim: Simulator) -> JiraHttp:
    return JiraHttp(sim, oauth_login(sim)["access_token"])


def ok(path: str, method: str, resp: Any, status: str = "200") -> Any:
    assert resp.status_code == int(status), resp.text[:500]
    body = resp.json()
    errors = response_errors(P + path, method, body, status)
    assert errors == [], "\n".join(errors)
    return body


def test_spec_is_the_official_one() -> None:
    spec = load_spec()
    assert spec["openapi"].startswith("3.0")
    for path in ("search/jql", "issue/bulkfetch", "worklog/updated", "worklog/list", "project/search"):
        assert P + path in spec["paths"]


def test_myself_users_fields(jira: JiraHttp) -> None:
    me = ok("myself", "get", jira.get("myself"))
    assert me["timeZone"] == "America/Los_Angeles"
    users = ok("users/search", "get", jira.get("users/search", params={"maxResults": 1000}))
    assert len(users) == 30
    fields = ok("field", "get", jira.get("field"))
    assert any(f["custom"] for f in fields)


def test_project_search_all_expands(jira: JiraHttp) -> None:
    first = ok(
        "project/search",
        "get",
        jira.get(
            "project/search",
            params={
                "expand": "description,lead,issueTypes,url,projectKeys,permissions,insight",
                "status": ["live", "archived"],
                "maxResults": 2,
            },
        ),
    )
    assert first["isLast"] is False and "nextPage" in first
    second = ok(
        "project/search",
        "get",
        jira.get("project/search", params={"startAt": 2, "maxResults": 2, "status": "live,archived"}),
    )
    assert second["isLast"] is True
    assert any(p.get("archived") for p in first["values"] + second["values"])


def test_search_jql_shapes(jira: JiraHttp) -> None:
    ok(
        "search/jql",
        "post",
        jira.post("search/jql", {"jql": "created >= 0", "fields": ["id"], "maxResults": 50}),
    )
    ok("search/jql", "get", jira.get("search/jql", params={"jql": "created >= 0", "fields": "key"}))
    body = ok(
        "search/jql",
        "get",
        jira.get(
            "search/jql",
            params={
                "jql": "project = ENG ORDER BY updated DESC",
                "fields": "*all",
                "expand": "names,schema",
                "maxResults": 30,
            },
        ),
    )
    assert body["names"] and body["schema"] and body["nextPageToken"]
    nxt = ok(
        "search/jql",
        "post",
        jira.post(
            "search/jql",
            {
                "jql": "project = ENG ORDER BY updated DESC",
                "fields": ["summary", "customfield_10051"],
                "nextPageToken": body["nextPageToken"],
                "maxResults": 30,
            },
        ),
    )
    assert {i["id"] for i in nxt["issues"]}.isdisjoint({i["id"] for i in body["issues"]})
    ok("search/approximate-count", "post", jira.post("search/approximate-count", {"jql": "project = ENG"}))


def test_bulkfetch_every_issue_all_fields(sim: Simulator, jira: JiraHttp) -> None:
    ids = [row["id"] for row in sim.truth()["jira_issues"]]
    seen = 0
    for i in range(0, len(ids), 100):
        body = ok(
            "issue/bulkfetch",
            "post",
            jira.post("issue/bulkfetch", {"issueIdsOrKeys": ids[i : i + 100], "fields": ["*all"]}),
        )
        seen += len(body["issues"])
    assert seen == len(ids)
    body = ok(
        "issue/bulkfetch",
        "post",
        jira.post(
            "issue/bulkfetch",
            {
                "issueIdsOrKeys": [*ids[:5], "NOPE-1", "99999999"],
                "expand": ["names", "schema", "changelog"],
                "fields": ["summary", "status", "customfield_10053", "parent"],
                "fieldsByKeys": False,
                "properties": [],
            },
        ),
    )
    assert [e["id"] for e in body["issueErrors"]] == ["NOPE-1", "99999999"]
    ok("issue/bulkfetch", "post", jira.post("issue/bulkfetch", {"issueIdsOrKeys": ids[:20]}))  # *navigable


def test_issue_and_comments(sim: Simulator, jira: JiraHttp) -> None:
    data = sim._site(None)
    issue = next(i for i in data.issues.values() if len(i.comments) >= 2)
    ok("issue/{issueIdOrKey}", "get", jira.get(f"issue/{issue.key}"))
    page = ok(
        "issue/{issueIdOrKey}/comment",
        "get",
        jira.get(f"issue/{issue.id}/comment", params={"orderBy": "-created", "maxResults": 1}),
    )
    assert page["total"] == len(issue.comments) and len(page["comments"]) == 1
    body = ok("comment/list", "post", jira.post("comment/list", {"ids": list(data.comments)[:1000]}))
    assert body["total"] == min(1000, len(data.comments))


def test_worklog_endpoints(sim: Simulator, jira: JiraHttp) -> None:
    ids: list[int] = []
    since = 0
    while True:
        page = ok("worklog/updated", "get", jira.get("worklog/updated", params={"since": since}))
        ids.extend(v["worklogId"] for v in page["values"])
        if page["lastPage"]:
            break
        since = page["until"]
    ids = list(dict.fromkeys(ids))
    assert len(ids) == 700
    for i in range(0, len(ids), 1000):
        body = ok("worklog/list", "post", jira.post("worklog/list", {"ids": ids[i : i + 1000]}))
        assert len(body) == len(ids[i : i + 1000])
    sim.mutate(delete_worklogs=3, seed=3)
    sim.advance(61)
    body = ok("worklog/deleted", "get", jira.get("worklog/deleted"))
    assert len(body["values"]) == 3


def test_error_bodies_match_spec(jira: JiraHttp) -> None:
    """These endpoints document no 400 schema; Jira's usual one (ErrorCollection, used by 83
    operations of the spec) is what they send."""
    for resp in (
        jira.post("search/jql", {"jql": "ORDER BY created"}),
        jira.post("search/jql", {"jql": "nosuchfield = 1"}),
        jira.post("issue/bulkfetch", {"issueIdsOrKeys": [str(i) for i in range(101)]}),
        jira.post("worklog/list", {"ids": list(range(1001))}),
    ):
        assert resp.status_code == 400
        errs = list(schema_validator("ErrorCollection").iter_errors(resp.json()))
        assert errs == [] and resp.json()["errorMessages"]


def test_validator_is_not_toothless() -> None:
    """Guard against a validator that accepts anything (e.g. a broken $ref resolution)."""
    assert response_errors(P + "worklog/updated", "get", {"values": [{"worklogId": "x"}]})
    assert response_errors(P + "project/search", "get", {"values": [{"bogus": 1}]})
    assert response_errors(P + "myself", "get", {"accountType": "robot"})
    assert not response_errors(P + "myself", "get", {"accountId": "a", "self": "https://x.example/u"})
