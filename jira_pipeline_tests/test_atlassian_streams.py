"""streams.py: endpoint shapes (with `responses`) and JQL datetime conversion across zones/DST."""

from __future__ import annotations

import json
import random
import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import responses
from responses import matchers

from jira_pipeline.atlassian import JiraApiError, JiraClient
from jira_pipeline.atlassian.streams import (
    approximate_count,
    comments_by_ids,
    fields,
    issue_ids,
    issues_by_ids,
    jql_datetime,
    myself,
    projects,
    updated_window_jql,
    users,
    worklog_deletions,
    worklog_updates,
    worklogs_by_ids,
)

API = "https://api.example.test"
CLOUD = "c-1"
BASE = f"{API}/ex/jira/{CLOUD}/rest/api/3"


class Tokens:
    def access_token(self) -> str:
        return "t"

    def refresh_after_401(self, rejected: str) -> str:
        return "t"


def client() -> JiraClient:
    return JiraClient(API, CLOUD, Tokens(), sleep=lambda s: None, rng=random.Random(1))


# ---------------------------------------------------------------------------------- simple reads


@responses.activate
def test_myself_fields_and_count() -> None:
    responses.get(f"{BASE}/myself", json={"accountId": "me", "timeZone": "Europe/Berlin"})
    responses.get(f"{BASE}/field", json=[{"id": "customfield_10010", "custom": True}])
    responses.post(
        f"{BASE}/search/approximate-count",
        json={"count": 153},
        match=[matchers.json_params_matcher({"jql": "updated >= -1d"})],
    )
    c = client()
    assert myself(c)["timeZone"] == "Europe/Berlin"
    assert fields(c)[0]["id"] == "customfield_10010"
    assert approximate_count(c, "updated >= -1d") == 153


@responses.activate
def test_projects_pages_include_archived_and_lead() -> None:
    responses.get(
        f"{BASE}/project/search",
        json={
            "values": [{"id": "1", "key": "A"}],
            "isLast": False,
            "startAt": 0,
            "maxResults": 100,
            "total": 2,
        },
        match=[
            matchers.query_param_matcher(
                {
                    "status": ["live", "archived"],
                    "expand": "description,lead,url",
                    "startAt": "0",
                    "maxResults": "100",
                }
            )
        ],
    )
    responses.get(
        f"{BASE}/project/search",
        json={"values": [{"id": "2", "key": "B", "archived": True}], "isLast": True, "startAt": 1},
        match=[
            matchers.query_param_matcher(
                {
                    "status": ["live", "archived"],
                    "expand": "description,lead,url",
                    "startAt": "1",
                    "maxResults": "100",
                }
            )
        ],
    )
    assert [[p["key"] for p in page] for page in projects(client())] == [["A"], ["B"]]


@responses.activate
def test_users_page_until_empty_and_dedupe_overlap() -> None:
    responses.get(f"{BASE}/users/search", json=[{"accountId": "a"}, {"accountId": "b"}])
    responses.get(f"{BASE}/users/search", json=[{"accountId": "b"}, {"accountId": "c"}])  # overlap
    responses.get(f"{BASE}/users/search", json=[])
    pages = list(users(client(), page_size=1000))
    assert [[u["accountId"] for u in p] for p in pages] == [["a", "b"], ["c"]]
    starts = [c.request.params["startAt"] for c in responses.calls]
    assert starts == ["0", "2", "4"]


@responses.activate
def test_issue_ids_walks_tokens_with_cheap_fields() -> None:
    responses.post(
        f"{BASE}/search/jql",
        json={"issues": [{"id": "10"}, {"id": "11"}], "nextPageToken": "n1", "isLast": False},
        match=[matchers.json_params_matcher({"jql": "J", "fields": ["id"], "maxResults": 5000})],
    )
    responses.post(
        f"{BASE}/search/jql",
        json={"issues": [{"id": "12"}], "isLast": True},
        match=[
            matchers.json_params_matcher(
                {"jql": "J", "fields": ["id"], "maxResults": 5000, "nextPageToken": "n1"}
            )
        ],
    )
    assert list(issue_ids(client(), "J")) == [["10", "11"], ["12"]]


@responses.activate
def test_issue_ids_empty_result_yields_nothing() -> None:
    responses.post(f"{BASE}/search/jql", json={"issues": [], "isLast": True})
    assert list(issue_ids(client(), "J")) == []


def _bulkfetch_callback(errors_once: set[str], lock: threading.Lock) -> Any:
    def cb(request: Any) -> tuple[int, dict[str, str], str]:
        body = json.loads(request.body)
        ids = body["issueIdsOrKeys"]
        assert len(ids) <= 100 and body["fields"] == ["*all"] and body["fieldsByKeys"] is False
        issues, errs = [], []
        for i in ids:
            with lock:
                fail = i in errors_once
                errors_once.discard(i)
            if fail:
                errs.append({"id": i, "errorMessage": "retriable"})
            elif int(i) == 194:  # deleted meanwhile: Jira reports it as an issueError
                errs.append(
                    {"id": i, "errorMessage": "Issue does not exist or you do not have permission to see it."}
                )
            elif int(i) % 97 != 0:  # some ids "deleted": Jira omits them silently
                issues.append({"id": i, "key": f"K-{i}", "fields": {}})
        random.shuffle(issues)  # Jira gives no order guarantee
        return 200, {}, json.dumps({"issues": issues, "issueErrors": errs})

    return cb


@responses.activate
def test_issues_by_ids_chunks_of_100_in_order_with_retry_of_issue_errors() -> None:
    lock = threading.Lock()
    responses.add_callback(
        responses.POST, f"{BASE}/issue/bulkfetch", callback=_bulkfetch_callback({"105", "250"}, lock)
    )
    ids = [str(i) for i in range(1, 251)]
    pages = list(issues_by_ids(client(), iter(ids), max_workers=3))
    assert [len(p) for p in pages] == [99, 99, 50]  # 97 and 194 deleted
    got = [issue["id"] for page in pages for issue in page]
    assert got == [i for i in ids if int(i) % 97 != 0]
    sizes = sorted(len(json.loads(c.request.body)["issueIdsOrKeys"]) for c in responses.calls)
    assert sizes == [1, 1, 50, 100, 100]  # 3 chunks + one retry for each errored id


@responses.activate
def test_issues_by_ids_persistent_issue_errors_raise_when_strict() -> None:
    responses.post(
        f"{BASE}/issue/bulkfetch",
        json={"issues": [], "issueErrors": [{"id": "5", "errorMessage": "payload too large"}]},
    )
    with pytest.raises(JiraApiError, match="payload too large"):
        list(issues_by_ids(client(), ["5"]))
    assert len(responses.calls) == 3
    responses.calls.reset()
    assert list(issues_by_ids(client(), ["5"], strict=False)) == []


@responses.activate
def test_worklog_feeds_follow_site_links_on_gateway() -> None:
    for feed in ("updated", "deleted"):
        responses.get(
            f"{BASE}/worklog/{feed}",
            json={
                "values": [{"worklogId": 1, "updatedTime": 5}],
                "since": 0,
                "until": 5,
                "lastPage": False,
                "nextPage": f"https://acme.atlassian.net/rest/api/3/worklog/{feed}?since=5",
            },
            match=[matchers.query_param_matcher({"since": "0"})],
        )
        responses.get(
            f"{BASE}/worklog/{feed}",
            json={"values": [], "since": 5, "until": 5, "lastPage": True},
            match=[matchers.query_param_matcher({"since": "5"})],
        )
    c = client()
    up = list(worklog_updates(c, 0))
    assert [p["until"] for p in up] == [5, 5] and up[-1]["lastPage"] is True
    assert len(list(worklog_deletions(c, 0))) == 2
    assert all(c.request.url.startswith(BASE) for c in responses.calls)


@responses.activate
def test_worklogs_by_ids_chunks_of_1000() -> None:
    def cb(request: Any) -> tuple[int, dict[str, str], str]:
        ids = json.loads(request.body)["ids"]
        assert len(ids) <= 1000 and all(isinstance(i, int) for i in ids)
        return 200, {}, json.dumps([{"id": str(i)} for i in ids])

    responses.add_callback(responses.POST, f"{BASE}/worklog/list", callback=cb)
    pages = list(worklogs_by_ids(client(), (str(i) for i in range(2500))))
    assert [len(p) for p in pages] == [1000, 1000, 500]
    assert [w["id"] for p in pages for w in p] == [str(i) for i in range(2500)]


@responses.activate
def test_comments_by_ids() -> None:
    responses.post(
        f"{BASE}/comment/list",
        json={"values": [{"id": "1"}, {"id": "2"}], "isLast": True},
        match=[matchers.json_params_matcher({"ids": [1, 2]})],
    )
    assert list(comments_by_ids(client(), ["1", "2"])) == [[{"id": "1"}, {"id": "2"}]]


# ------------------------------------------------------------------------------------ JQL datetime

LA = "America/Los_Angeles"


def _readings(literal: str, tz: str) -> set[datetime]:
    wall = datetime.strptime(literal, "%Y/%m/%d %H:%M")
    zone = ZoneInfo(tz)
    return {wall.replace(tzinfo=zone, fold=f).astimezone(UTC) for f in (0, 1)}


def u(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_utc_floor_and_ceil() -> None:
    t = u(2024, 5, 6, 7, 8, 9, 123)
    assert jql_datetime(t, "UTC", bound="lower") == "2024/05/06 07:08"
    assert jql_datetime(t, "UTC", bound="upper") == "2024/05/06 07:09"
    exact = u(2024, 5, 6, 7, 8)
    assert (
        jql_datetime(exact, "UTC", bound="lower")
        == jql_datetime(exact, "UTC", bound="upper")
        == "2024/05/06 07:08"
    )


def test_non_utc_instant_input_is_converted() -> None:
    t = datetime(2024, 1, 15, 12, 0, tzinfo=ZoneInfo("Asia/Tokyo"))  # 03:00 UTC = 19:00 prev day in LA
    assert jql_datetime(t, LA, bound="lower") == "2024/01/14 19:00"


def test_los_angeles_fall_back_fold() -> None:
    first = u(2024, 11, 3, 8, 30)  # 01:30 PDT
    second = u(2024, 11, 3, 9, 30)  # 01:30 PST
    # "01:30" could mean either; a lower bound for the first occurrence must step back an hour
    assert jql_datetime(first, LA, bound="lower") == "2024/11/03 00:30"
    assert jql_datetime(first, LA, bound="upper") == "2024/11/03 01:30"
    assert jql_datetime(second, LA, bound="lower") == "2024/11/03 01:30"
    assert jql_datetime(second, LA, bound="upper") == "2024/11/03 02:30"


def test_los_angeles_spring_forward_gap() -> None:
    before_gap = u(2024, 3, 10, 9, 59, 30)  # 01:59:30 PST; 02:00-02:59 local does not exist
    assert jql_datetime(before_gap, LA, bound="lower") == "2024/03/10 01:59"
    assert jql_datetime(before_gap, LA, bound="upper") == "2024/03/10 03:00"
    at_jump = u(2024, 3, 10, 10, 0)  # 03:00 PDT
    assert jql_datetime(at_jump, LA, bound="lower") == "2024/03/10 03:00"
    assert jql_datetime(at_jump, LA, bound="upper") == "2024/03/10 03:00"


def test_extreme_offsets_cross_the_date_line() -> None:
    t = u(2024, 1, 1, 0, 0, 30)
    assert jql_datetime(t, "Pacific/Kiritimati", bound="lower") == "2024/01/01 14:00"  # UTC+14
    assert jql_datetime(t, "Pacific/Kiritimati", bound="upper") == "2024/01/01 14:01"
    assert jql_datetime(t, "Pacific/Pago_Pago", bound="lower") == "2023/12/31 13:00"  # UTC-11
    assert jql_datetime(t, "Pacific/Pago_Pago", bound="upper") == "2023/12/31 13:01"


@pytest.mark.parametrize(
    "tz",
    [
        "UTC",
        LA,
        "Europe/Berlin",
        "Australia/Lord_Howe",
        "Pacific/Kiritimati",
        "Pacific/Pago_Pago",
        "Asia/Kolkata",
    ],
)
def test_bounds_are_always_conservative_and_tight(tz: str) -> None:
    """Property check around DST changes: every reading of the literal is on the safe side, and
    the literal is never more than the fold width (+1 minute) away."""
    rng = random.Random(tz)
    days = [u(2024, 3, 10), u(2024, 3, 31), u(2024, 4, 7), u(2024, 10, 6), u(2024, 10, 27), u(2024, 11, 3)]
    for day in days:
        for _ in range(300):
            t = day + timedelta(seconds=rng.uniform(0, 86400))
            lo = _readings(jql_datetime(t, tz, bound="lower"), tz)
            hi = _readings(jql_datetime(t, tz, bound="upper"), tz)
            assert max(lo) <= t, (tz, t)
            assert min(hi) >= t, (tz, t)
            assert t - min(lo) <= timedelta(minutes=61) and max(hi) - t <= timedelta(minutes=61)


def test_naive_instant_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        jql_datetime(datetime(2024, 1, 1), "UTC", bound="lower")


def test_updated_window_jql() -> None:
    start, end = u(2024, 1, 1, 8, 0, 10), u(2024, 1, 2, 8, 0)
    assert updated_window_jql(start, end, LA) == (
        'updated >= "2024/01/01 00:00" AND updated < "2024/01/02 00:00" ORDER BY updated ASC'
    )
    assert updated_window_jql(start, None, "UTC", projects=["AB", 'we"ird'], order_by=None) == (
        'updated >= "2024/01/01 08:00" AND project in ("AB", "we\\"ird")'
    )
    assert updated_window_jql(None, end, "UTC", order_by="updated DESC") == (
        'updated < "2024/01/02 08:00" ORDER BY updated DESC'
    )
    with pytest.raises(ValueError, match="at least one bound"):
        updated_window_jql(None, None, "UTC")
    with pytest.raises(ValueError, match="empty window"):
        updated_window_jql(end, start, "UTC")
    with pytest.raises(ValueError):
        updated_window_jql(start, end, "UTC", projects=[])
