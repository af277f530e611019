"""Jira behaviours of the simulator that an incremental extractor depends on.

Page caps (search/jql 5000 ids vs 100 bodies, bulkfetch 100, worklog/list 1000,
project/search 100, users/search 1000), search paging with nextPageToken, archived projects,
JQL time-zone semantics, unbounded/invalid JQL, index lag, the worklog feeds (last-minute
hold-back, absolute site-host nextPage), mutations reflected in truth and in the API, faults,
stats, multi-site isolation, data realism, and the CLI.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from jira_pipeline_tests.simulator import SimConfig, Simulator
from jira_pipeline_tests.simulator.jql import UNBOUNDED
from jira_pipeline_tests.simulator.testing import JiraHttp, oauth_login

JIRA_TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}[+-]\d{4}$")


def _login(sim: Simulator, cloud_id: str | None = None) -> JiraHttp:
    return JiraHttp(sim, oauth_login(sim)["access_token"], cloud_id)


@pytest.fixture(scope="module")
def big() -> Iterator[Simulator]:
    """Large enough for the real caps: >5000 searchable issues, >2 worklog pages, >1000 users."""
    with Simulator(SimConfig(seed=11, issues=5800, worklogs=2600, users=1100, projects=4)) as s:
        yield s
        assert s.errors == []


@pytest.fixture(scope="module")
def small() -> Iterator[Simulator]:
    with Simulator(SimConfig(seed=5, sites=2, issues=300, worklogs=900, users=40, projects=4)) as s:
        yield s
        assert s.errors == []


@pytest.fixture(scope="module")
def bj(big: Simulator) -> JiraHttp:
    return _login(big)


@pytest.fixture(scope="module")
def sj(small: Simulator) -> JiraHttp:
    return _login(small)


def searchable(sim: Simulator, cloud_id: str | None = None) -> list[dict[str, Any]]:
    truth = sim.truth(cloud_id)
    archived = {p["id"] for p in truth["jira_projects"] if p["is_archived"]}
    return [i for i in truth["jira_issues"] if i["project_id"] not in archived]


# ---------------------------------------------------------------------------------- caps


def test_search_page_caps(big: Simulator, bj: JiraHttp) -> None:
    assert len(searchable(big)) > 5000
    body = bj.post("search/jql", {"jql": "created >= 0", "fields": ["id"], "maxResults": 10000}).json()
    assert len(body["issues"]) == 5000 and body["isLast"] is False and "total" not in body
    assert set(body["issues"][0]) == {"id"}
    body = bj.get("search/jql", params={"jql": "created >= 0", "fields": "id,key", "maxResults": 9000}).json()
    assert len(body["issues"]) == 5000 and set(body["issues"][0]) == {"id", "key"}
    body = bj.post("search/jql", {"jql": "created >= 0", "fields": ["summary"], "maxResults": 1000}).json()
    assert len(body["issues"]) == 100 and set(body["issues"][0]["fields"]) == {"summary"}
    body = bj.post("search/jql", {"jql": "created >= 0"}).json()  # defaults: 50 ids
    assert len(body["issues"]) == 50 and set(body["issues"][0]) == {"id"}


def test_full_id_walk_matches_truth_and_count(big: Simulator, bj: JiraHttp) -> None:
    issues = bj.search_all("created >= 0 ORDER BY created ASC")
    ids = [i["id"] for i in issues]
    assert len(ids) == len(set(ids))
    assert set(ids) == {i["id"] for i in searchable(big)}
    count = bj.post("search/approximate-count", {"jql": "created >= 0"}).json()["count"]
    assert count == len(ids)


def test_other_caps(big: Simulator, bj: JiraHttp) -> None:
    r = bj.post("issue/bulkfetch", {"issueIdsOrKeys": [str(10000 + i) for i in range(101)]})
    assert r.status_code == 400 and r.json()["errorMessages"]
    assert bj.post("issue/bulkfetch", {"issueIdsOrKeys": []}).status_code == 400
    r = bj.post("issue/bulkfetch", {"issueIdsOrKeys": [str(10000 + i) for i in range(100)]})
    assert r.status_code == 200 and len(r.json()["issues"]) == 100
    assert bj.post("worklog/list", {"ids": list(range(10000, 11001))}).status_code == 400
    assert bj.post("worklog/list", {"ids": []}).status_code == 400
    assert len(bj.post("worklog/list", {"ids": list(range(10000, 11000))}).json()) == 1000
    assert bj.post("comment/list", {"ids": list(range(1001))}).status_code == 400
    body = bj.get("project/search", params={"maxResults": 500}).json()
    assert body["maxResults"] == 100
    assert len(bj.get("users/search", params={"maxResults": 5000}).json()) == 1000
    rest = bj.get("users/search", params={"startAt": 1000, "maxResults": 1000}).json()
    assert len(rest) == 100  # bare array, no isLast: page until short


# ---------------------------------------------------------------------------------- worklog feed


def test_worklog_feed_paging_with_site_host_next_page(big: Simulator, bj: JiraHttp) -> None:
    site = big.sites[0]
    since = 0
    seen: list[int] = []
    pages = 0
    while True:
        r = bj.get("worklog/updated", params={"since": since})
        assert r.status_code == 200
        page = r.json()
        pages += 1
        times = [v["updatedTime"] for v in page["values"]]
        assert times == sorted(times) and len(times) <= 1000
        assert (
            page["since"] == since and page["self"] == f"{site.url}/rest/api/3/worklog/updated?since={since}"
        )
        assert page["until"] == (times[-1] if times else since)
        seen.extend(v["worklogId"] for v in page["values"])
        if page["lastPage"]:
            assert "nextPage" not in page
            break
        # Jira links the next page on the *site* host, not the gateway: the client must rebuild it
        assert page["nextPage"] == f"{site.url}/rest/api/3/worklog/updated?since={page['until']}"
        since = page["until"]
    assert pages == 3
    assert set(seen) == {int(w["id"]) for w in big.truth()["jira_worklogs"]}


def test_worklog_feed_holds_back_the_last_minute(small: Simulator, sj: JiraHttp) -> None:
    start = int(small.now().timestamp() * 1000) - 1
    added = small.mutate(add_worklogs=3, update_worklogs=2, seed=21)
    feed = sj.get("worklog/updated", params={"since": start}).json()
    assert feed["values"] == [] and feed["until"] == start and feed["lastPage"] is True
    small.advance(30)
    assert sj.get("worklog/updated", params={"since": start}).json()["values"] == []
    small.advance(31)
    feed = sj.get("worklog/updated", params={"since": start}).json()
    got = {str(v["worklogId"]) for v in feed["values"]}
    assert got == set(added["added_worklogs"]) | set(added["updated_worklogs"])
    listed = sj.post("worklog/list", {"ids": [int(x) for x in got]}).json()
    assert {w["id"] for w in listed} == got


# ---------------------------------------------------------------------------------- JQL


def test_unbounded_and_invalid_jql(sj: JiraHttp) -> None:
    for jql in ("", "ORDER BY created DESC", "order by key"):
        r = sj.post("search/jql", {"jql": jql})
        assert r.status_code == 400
        assert r.json() == {"errorMessages": [UNBOUNDED], "errors": {}}
    assert sj.get("search/jql").status_code == 400  # no jql at all
    for jql in (
        "nosuch = 1",
        "project = ",
        "updated >",
        "created >= '2024-13-45'",
        "project = ENG AND",
        "(project = ENG",
        "project = NOPE",
        "project = ENG ORDER BY nosuch",
    ):
        r = sj.post("search/jql", {"jql": jql})
        assert r.status_code == 400, jql
        assert r.json()["errorMessages"], jql
    r = sj.post("search/jql", {"jql": "created >= 0", "nextPageToken": "garbage"})
    assert r.status_code == 400


def test_archived_project_hidden_from_search_but_fetchable(small: Simulator, sj: JiraHttp) -> None:
    truth = small.truth()
    arch = [p for p in truth["jira_projects"] if p["is_archived"]]
    assert arch
    arch_issue_ids = [i["id"] for i in truth["jira_issues"] if i["project_id"] == arch[0]["id"]]
    assert arch_issue_ids
    r = sj.post("search/jql", {"jql": f"project = {arch[0]['key']}"})
    assert r.status_code == 400 and "does not exist" in r.json()["errorMessages"][0]
    ids = {i["id"] for i in sj.search_all("created >= 0")}
    assert ids.isdisjoint(arch_issue_ids)
    body = sj.post("issue/bulkfetch", {"issueIdsOrKeys": arch_issue_ids[:100]}).json()
    assert len(body["issues"]) == min(100, len(arch_issue_ids)) and body["issueErrors"] == []
    assert all(p["key"] != arch[0]["key"] for p in sj.get("project/search").json()["values"])
    listed = sj.get("project/search", params={"status": "archived"}).json()["values"]
    assert [p["key"] for p in listed] == [arch[0]["key"]] and listed[0]["archived"] is True


def test_jql_reads_literals_in_the_users_time_zone(small: Simulator, sj: JiraHttp) -> None:
    """The same literal selects different issues for a UTC and a UTC-8 user; epoch ms does not."""
    rows = searchable(small)
    pivot = sorted(rows, key=lambda i: i["updated"])[len(rows) // 2]
    lit = (pivot["updated"] - timedelta(hours=1)).replace(second=0, microsecond=0)
    literal = lit.strftime("%Y/%m/%d %H:%M")
    epoch = int(lit.timestamp() * 1000)

    def ids(jql: str) -> set[str]:
        return {i["id"] for i in sj.search_all(jql)}

    def expected(instant: datetime) -> set[str]:
        return {i["id"] for i in rows if i["updated"] >= instant}

    try:
        small.set_user_timezone("UTC")
        utc_hits = ids(f'updated >= "{literal}"')
        assert utc_hits == expected(lit)
        assert ids(f'updated >= "{lit:%Y-%m-%d %H:%M}"') == utc_hits
        assert ids(f"updated >= {epoch}") == utc_hits
        small.set_user_timezone("Etc/GMT+8")  # POSIX sign: UTC-8 all year
        assert sj.get("myself").json()["timeZone"] == "Etc/GMT+8"
        pst_hits = ids(f'updated >= "{literal}"')
        assert pst_hits == expected(lit + timedelta(hours=8))
        assert pst_hits != utc_hits and pivot["id"] in utc_hits and pivot["id"] not in pst_hits
        assert ids(f"updated >= {epoch}") == utc_hits  # epoch milliseconds ignore the zone
        day = lit.strftime("%Y-%m-%d")
        assert ids(f'created < "{day}"') == {
            i["id"]
            for i in rows
            if i["created"] < datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC) + timedelta(hours=8)
        }
        # rendered timestamps carry the user's offset
        issue = sj.post("issue/bulkfetch", {"issueIdsOrKeys": [pivot["id"]], "fields": ["updated"]}).json()
        rendered = issue["issues"][0]["fields"]["updated"]
        assert rendered.endswith("-0800")
        assert datetime.strptime(rendered, "%Y-%m-%dT%H:%M:%S.%f%z") == pivot["updated"]
    finally:
        small.set_user_timezone("UTC")


def test_jql_operators_and_ordering(small: Simulator, sj: JiraHttp) -> None:
    rows = searchable(small)
    keys = sorted({i["project_key"] for i in rows})
    got = sj.search_all(
        f"project in ({keys[0]}, {keys[1]}) ORDER BY updated ASC", fields=["updated"], max_results=100
    )
    assert {i["id"] for i in got} == {i["id"] for i in rows if i["project_key"] in keys[:2]}
    stamps = [datetime.strptime(i["fields"]["updated"], "%Y-%m-%dT%H:%M:%S.%f%z") for i in got]
    assert stamps == sorted(stamps)
    mid = sorted(i["updated"] for i in rows)[len(rows) // 2]
    ms = int(mid.timestamp() * 1000)
    a = {i["id"] for i in sj.search_all(f"updated < {ms} OR (project = {keys[0]} AND NOT updated < {ms})")}
    assert a == {i["id"] for i in rows if i["updated"] < mid or i["project_key"] == keys[0]}
    proj_id = next(i["project_id"] for i in rows if i["project_key"] == keys[1])
    assert {i["id"] for i in sj.search_all(f"project = {proj_id}")} == {
        i["id"] for i in rows if i["project_key"] == keys[1]
    }
    desc = [int(i["id"]) for i in sj.search_all("created >= 0 ORDER BY id DESC")]
    assert desc == sorted(desc, reverse=True)


def test_next_page_token_survives_updates_without_skips(small: Simulator, sj: JiraHttp) -> None:
    before = {i["id"] for i in searchable(small)}
    first = sj.post(
        "search/jql", {"jql": "created >= 0 ORDER BY updated ASC", "maxResults": 100, "fields": ["id"]}
    ).json()
    small.mutate(update_issues=10, seed=99)
    seen = {i["id"] for i in first["issues"]}
    token = first["nextPageToken"]
    while token:
        page = sj.post(
            "search/jql",
            {"jql": "created >= 0 ORDER BY updated ASC", "maxResults": 100, "nextPageToken": token},
        ).json()
        seen |= {i["id"] for i in page["issues"]}
        token = page.get("nextPageToken")
    assert before <= seen


def test_index_lag_hides_fresh_changes_from_search(small: Simulator, sj: JiraHttp) -> None:
    small.advance(120)  # leave earlier tests' changes behind
    small.index_lag_seconds = 30
    try:
        changed = small.mutate(update_issues=1, seed=7)["updated_issues"][0]
        since = int((small.now() - timedelta(seconds=5)).timestamp() * 1000)
        assert sj.search_all(f"updated >= {since}") == []
        fetched = sj.post("issue/bulkfetch", {"issueIdsOrKeys": [changed], "fields": ["summary"]}).json()
        truth = next(i for i in small.truth()["jira_issues"] if i["id"] == changed)
        assert fetched["issues"][0]["fields"]["summary"] == truth["summary"]  # bulkfetch is consistent
        small.advance(31)
        assert [i["id"] for i in sj.search_all(f"updated >= {since}")] == [changed]
    finally:
        small.index_lag_seconds = 0


# ---------------------------------------------------------------------------------- mutations


def test_mutations_are_reflected_in_truth_and_api(small: Simulator, sj: JiraHttp) -> None:
    small.advance(120)
    now = small.now()
    before = {i["id"]: i for i in small.truth()["jira_issues"]}
    out = small.mutate(update_issues=4, create_issues=3, move_issues=2, delete_issues=2, seed=42)
    after = {i["id"]: i for i in small.truth()["jira_issues"]}
    for iid in out["updated_issues"] + out["moved_issues"]:
        assert after[iid]["updated"] >= now and after[iid]["updated"] <= small.now()
    for iid in out["created_issues"]:
        assert iid not in before and after[iid]["created"] == after[iid]["updated"]
    for old_key, new_key in out["moved_keys"].items():
        iid = before_id = next(i for i, r in before.items() if r["key"] == old_key)
        assert after[iid]["key"] == new_key and before_id in after
        assert after[iid]["project_key"] == new_key.split("-")[0] != old_key.split("-")[0]
        assert after[iid]["url"].endswith(f"/browse/{new_key}")
        body = sj.post("issue/bulkfetch", {"issueIdsOrKeys": [old_key], "fields": ["project"]}).json()
        assert body["issues"][0]["key"] == new_key  # old keys still resolve, as in Jira
    deleted = small.deleted()
    for iid in out["deleted_issues"]:
        assert iid not in after and iid in deleted["jira_issues"]
    wl_ids = {w["id"] for w in small.truth()["jira_worklogs"]}
    assert wl_ids.isdisjoint(out["deleted_worklogs"])
    body = sj.post("issue/bulkfetch", {"issueIdsOrKeys": out["deleted_issues"]}).json()
    assert body["issues"] == [] and {e["id"] for e in body["issueErrors"]} == set(out["deleted_issues"])
    small.advance(61)
    since = int(now.timestamp() * 1000)
    feed = sj.get("worklog/deleted", params={"since": since}).json()
    assert {str(v["worklogId"]) for v in feed["values"]} == set(out["deleted_worklogs"])
    hits = {i["id"] for i in sj.search_all(f"updated >= {since}")}
    assert hits == set(out["updated_issues"] + out["created_issues"] + out["moved_issues"])


def test_archive_and_user_mutations(small: Simulator, sj: JiraHttp) -> None:
    truth = small.truth()
    live = [p for p in truth["jira_projects"] if not p["is_archived"]]
    target = live[-1]
    user = next(
        u
        for u in truth["jira_users"]
        if u["active"]
        and u["account_type"] == "atlassian"
        and u["account_id"] != truth["jira_users"][0]["account_id"]
    )
    other = next(
        u
        for u in truth["jira_users"]
        if u["account_type"] == "atlassian"
        and u["account_id"] not in (user["account_id"], truth["jira_users"][0]["account_id"])
    )
    small.mutate(
        archive_project=target["key"],
        deactivate_user=user["account_id"],
        change_user=other["account_id"],
        seed=5,
    )
    after = small.truth()
    assert next(p for p in after["jira_projects"] if p["id"] == target["id"])["is_archived"] is True
    in_target = {i["id"] for i in after["jira_issues"] if i["project_id"] == target["id"]}
    assert in_target and in_target.isdisjoint(i["id"] for i in sj.search_all("created >= 0"))
    users = {u["accountId"]: u for u in sj.get("users/search", params={"maxResults": 1000}).json()}
    assert users[user["account_id"]]["active"] is False
    changed = next(u for u in after["jira_users"] if u["account_id"] == other["account_id"])
    assert users[other["account_id"]]["displayName"] == changed["display_name"]
    assert changed["raw"] == users[other["account_id"]]


# ---------------------------------------------------------------------------------- faults, stats


def test_faults(small: Simulator, sj: JiraHttp) -> None:
    try:
        small.set_faults(rate_429=1.0)
        r = sj.get("field")
        assert r.status_code == 429
        assert r.headers["Retry-After"] == "1" and r.headers["RateLimit-Reason"] == "jira-burst-based"
        assert r.headers["X-RateLimit-Remaining"] == "0" and "X-RateLimit-Reset" in r.headers
        # the authorization server is not subject to Jira faults
        assert oauth_login(small)["access_token"]
        small.set_faults(rate_5xx=1.0)
        codes = {sj.get("field").status_code for _ in range(12)}
        assert codes <= {500, 502, 503} and len(codes) >= 2
        small.set_faults(drop_rate=1.0)
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"{sj.base}/field", headers=dict(sj.session.headers), timeout=5)
        small.set_faults(latency_ms=150)
        t0 = time.perf_counter()
        assert sj.get("field").status_code == 200
        assert time.perf_counter() - t0 >= 0.15
        small.set_faults(rate_429=0.2, rate_5xx=0.1, latency_ms=0)
        before = small.stats.faults_injected
        statuses = [sj.get("field").status_code for _ in range(200)]
        faults = sum(s != 200 for s in statuses)
        assert 30 <= faults <= 90 and small.stats.faults_injected - before == faults
    finally:
        small.set_faults(latency_ms=0)


def test_stats_and_routes(small: Simulator, sj: JiraHttp) -> None:
    small.reset_stats()
    sj.post("issue/bulkfetch", {"issueIdsOrKeys": ["10001"]})
    sj.post("issue/bulkfetch", {"issueIdsOrKeys": ["10002"]})
    sj.get("issue/10001/comment")
    assert small.stats[("POST", "/rest/api/3/issue/bulkfetch")] == 2
    assert small.stats.requests[("GET", "/rest/api/3/issue/{issueIdOrKey}/comment")] == 1
    assert small.stats.total == 3 and small.stats.bytes_sent > 0
    assert sj.get("search", params={"jql": "created >= 0"}).status_code == 410
    bad = JiraHttp(
        small, sj.session.headers["Authorization"][7:], cloud_id="00000000-0000-0000-0000-000000000000"
    )
    assert bad.get("field").status_code == 404


def test_sites_are_isolated(small: Simulator) -> None:
    a, b = small.sites
    assert a.cloud_id != b.cloud_id and a.url != b.url
    ja, jb = _login(small, a.cloud_id), _login(small, b.cloud_id)
    ta, tb = small.truth(a.cloud_id), small.truth(b.cloud_id)
    assert {i["cloud_id"] for i in tb["jira_issues"]} == {b.cloud_id}
    assert {i["id"] for i in ja.search_all("created >= 0")} == {
        i["id"] for i in searchable(small, a.cloud_id)
    }
    assert {i["id"] for i in jb.search_all("created >= 0")} == {
        i["id"] for i in searchable(small, b.cloud_id)
    }
    assert [u["account_id"] for u in ta["jira_users"]] != [u["account_id"] for u in tb["jira_users"]]


# ---------------------------------------------------------------------------------- data realism


def _walk(node: Any, kinds: set[str], marks: set[str]) -> None:
    if isinstance(node, dict):
        if "type" in node:
            kinds.add(node["type"])
            if node["type"] == "codeBlock" and node.get("attrs", {}).get("language"):
                kinds.add("codeBlock+language")
        for m in node.get("marks", ()):
            marks.add(m["type"])
        for v in node.values():
            _walk(v, kinds, marks)
    elif isinstance(node, list):
        for v in node:
            _walk(v, kinds, marks)


def test_data_realism(small: Simulator, sj: JiraHttp) -> None:
    t = small.truth(small.sites[1].cloud_id)
    issues = t["jira_issues"]
    sizes = sorted(len(str(i["description_adf"])) for i in issues if i["description_adf"])
    assert sizes[-1] > 150_000 and sizes[-2] < 60_000  # exactly one huge description
    assert any(i["description_adf"] is None for i in issues)
    kinds: set[str] = set()
    marks: set[str] = set()
    for i in issues:
        _walk(i["description_adf"], kinds, marks)
    for w in t["jira_worklogs"]:
        _walk(w["comment_adf"], kinds, marks)
    assert {
        "heading",
        "bulletList",
        "orderedList",
        "listItem",
        "codeBlock+language",
        "table",
        "tableHeader",
        "tableCell",
        "mention",
        "emoji",
        "panel",
        "hardBreak",
        "blockquote",
        "rule",
        "mediaSingle",
        "media",
        "inlineCard",
    } <= kinds
    assert {"strong", "em", "code", "link", "strike"} <= marks
    assert any(i["parent_key"] and i["issue_type"] == "Subtask" for i in issues)
    assert {i["status_category"] for i in issues} == {"new", "indeterminate", "done"}
    text = " ".join(i["summary"] for i in issues) + str([i["description_adf"] for i in issues[:200]])
    for pattern in (r"[\u4e00-\u9fff]", r"[\u0600-\u06ff]", r"[\u0590-\u05ff]", "[\U0001f300-\U0001faff]"):
        assert re.search(pattern, text), pattern
    users = t["jira_users"]
    assert any(u["email_address"] is None for u in users)
    assert any(not u["active"] for u in users)
    assert {"atlassian", "app", "customer"} <= {u["account_type"] for u in users}
    arch = [p for p in t["jira_projects"] if p["is_archived"]]
    assert arch and any(i["project_id"] == arch[0]["id"] for i in issues)
    ages = [small.now() - i["created"] for i in issues]
    assert max(ages) > timedelta(days=500) and min(ages) < timedelta(days=60)
    for w in t["jira_worklogs"][:50]:
        assert w["started"].tzinfo is not None and w["time_spent_seconds"] > 0
    types = {f["schema"].get("custom", "").rsplit(":", 1)[-1] for f in sj.get("field").json() if f["custom"]}
    assert {
        "float",
        "textfield",
        "textarea",
        "select",
        "multiuserpicker",
        "datepicker",
        "datetime",
        "labels",
    } <= types
    body = sj.post(
        "issue/bulkfetch", {"issueIdsOrKeys": [i["id"] for i in searchable(small)[:50]], "fields": ["*all"]}
    ).json()
    for issue in body["issues"]:
        f = issue["fields"]
        assert JIRA_TS.match(f["created"]) and JIRA_TS.match(f["updated"])
        assert set(f) >= {
            "summary",
            "status",
            "issuetype",
            "project",
            "comment",
            "worklog",
            "customfield_10051",
        }
    raw = t["jira_projects"][0]["raw"]
    assert "lead" in raw and "description" in raw


def test_truth_matches_the_api(small: Simulator, sj: JiraHttp) -> None:
    truth = small.truth()
    issue = next(i for i in truth["jira_issues"] if i["parent_key"] and i["priority"])
    got = sj.post("issue/bulkfetch", {"issueIdsOrKeys": [issue["key"]], "fields": ["*all"]}).json()["issues"][
        0
    ]
    f = got["fields"]
    assert got["id"] == issue["id"] and got["key"] == issue["key"]
    assert f["summary"] == issue["summary"] and f["status"]["name"] == issue["status"]
    assert f["status"]["statusCategory"]["key"] == issue["status_category"]
    assert f["priority"]["name"] == issue["priority"] and f["issuetype"]["name"] == issue["issue_type"]
    assert f["parent"]["key"] == issue["parent_key"] and f["labels"] == issue["labels"]
    assert f["description"] == issue["description_adf"]
    assert (
        f["project"]["id"] == issue["project_id"]
        and f["reporter"]["accountId"] == issue["reporter_account_id"]
    )
    assert datetime.strptime(f["updated"], "%Y-%m-%dT%H:%M:%S.%f%z") == issue["updated"]
    wl = truth["jira_worklogs"][0]
    got_wl = sj.post("worklog/list", {"ids": [int(wl["id"])]}).json()[0]
    assert got_wl["issueId"] == wl["issue_id"] and got_wl["timeSpentSeconds"] == wl["time_spent_seconds"]
    assert got_wl.get("comment") == wl["comment_adf"]
    projects = sj.get(
        "project/search", params={"expand": "description,lead", "status": "live,archived"}
    ).json()
    by_id = {p["id"]: p for p in projects["values"]}
    for p in truth["jira_projects"]:
        assert by_id[p["id"]] == p["raw"]
    users = sj.get("users/search", params={"maxResults": 1000}).json()
    assert users == [u["raw"] for u in truth["jira_users"]]


# ---------------------------------------------------------------------------------- CLI


def test_cli_serves_until_sigterm(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jira_pipeline_tests.simulator",
            "--port",
            "0",
            "--issues",
            "30",
            "--worklogs",
            "40",
            "--users",
            "10",
            "--tz",
            "Europe/Berlin",
            "--sites",
            "2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        lines = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if line.startswith("Ctrl-C"):
                break
        url = re.search(r"listening on (http://127\.0\.0\.1:\d+)", "".join(lines))
        assert url, lines
        assert sum("cloud_id=" in x for x in lines) == 2 and any("sim-client-secret" in x for x in lines)
        assert requests.get(f"{url.group(1)}/authorize", timeout=5).status_code == 400
        state = requests.get(f"{url.group(1)}/_sim/state", timeout=5).json()
        assert len(state["sites"]) == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0 and "stopped" in out
