"""One small declarative function per Jira endpoint, yielding pages of plain dicts.

Everything here is built on `JiraClient.paginate` / `map_concurrent`; no endpoint has its own
loop. The shapes follow Jira Cloud as it is today (see DESIGN.md):

* issues: the old `/search` is gone (410). The fast shape is to walk ids cheaply with
  `search/jql` (`fields=["id"]`, up to 5000 a page) and fetch bodies with `issue/bulkfetch`
  (at most 100 ids a call) several calls in flight.
* worklogs: `worklog/updated|deleted?since=ms` feeds (1000 a page, site-host `nextPage` links,
  the last minute never returned), bodies via `worklog/list` (at most 1000 ids).
* JQL datetimes are minute-granular literals read in the *searching user's* time zone
  (`/myself` -> `timeZone`): `jql_datetime` converts instants conservatively.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from itertools import islice
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo

from .client import JiraApiError, JiraClient

__all__ = [
    "BULKFETCH_MAX",
    "WORKLOG_LIST_MAX",
    "approximate_count",
    "comments_by_ids",
    "fields",
    "issue_ids",
    "issues_by_ids",
    "jql_datetime",
    "myself",
    "projects",
    "updated_window_jql",
    "users",
    "worklog_deletions",
    "worklog_updates",
    "worklogs_by_ids",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

BULKFETCH_MAX = 100
"""`POST issue/bulkfetch` accepts at most 100 ids or keys."""
WORKLOG_LIST_MAX = 1000
"""`POST worklog/list` and `POST comment/list` accept at most 1000 ids."""
PROJECT_PAGE_MAX = 100
"""`project/search` caps `maxResults` at 100."""
_BULKFETCH_RETRIES = 2


# ------------------------------------------------------------------------------------ simple reads


def myself(client: JiraClient) -> dict[str, Any]:
    """The user behind the token; its `timeZone` is the zone JQL date literals are read in."""
    return client.get("myself")


def fields(client: JiraClient) -> list[dict[str, Any]]:
    """All system and custom fields (ids like `customfield_10010`, names, schemas)."""
    return client.get("field")


def approximate_count(client: JiraClient, jql: str) -> int:
    """Jira's approximate hit count for a bounded JQL: a completeness check, not an exact total."""
    return int(client.post("search/approximate-count", {"jql": jql})["count"])


# ------------------------------------------------------------------------------------- paged lists


def projects(client: JiraClient, statuses: Sequence[str] = ("live", "archived")) -> Iterator[list[dict[str, Any]]]:
    """Projects, archived ones included by default (their issues vanish from search, so the
    project row is how downstream learns they are archived). `lead` is expanded for
    `lead_account_id`."""
    params = {"status": list(statuses), "expand": "description,lead,url"}
    for page in client.paginate("project/search", style="offset", params=params, page_size=PROJECT_PAGE_MAX):
        if page.items:
            yield page.items


def users(client: JiraClient, page_size: int = 1000) -> Iterator[list[dict[str, Any]]]:
    """All users (active, inactive, apps). A bare array without `isLast`; Jira may return fewer
    than asked (privacy filtering, silent caps), so we advance by what came back, stop on an empty
    page, and drop account ids already yielded (overlapping pages are then harmless)."""
    seen: set[str] = set()
    for page in client.paginate("users/search", style="array", page_size=page_size):
        fresh = []
        for user in page.items:
            account_id = user.get("accountId")
            if account_id in seen:
                continue
            seen.add(account_id)
            fresh.append(user)
        if fresh:
            yield fresh


def issue_ids(client: JiraClient, jql: str, page_size: int = 5000) -> Iterator[list[str]]:
    """Issue ids matching a *bounded* JQL, in big cheap pages (`fields=["id"]` allows 5000)."""
    body = {"jql": jql, "fields": ["id"]}
    for page in client.paginate(
        "search/jql", style="token", method="POST", json=body, items_key="issues", page_size=page_size
    ):
        ids = [str(issue["id"]) for issue in page.items]
        if ids:
            yield ids


def issues_by_ids(
    client: JiraClient,
    ids: Iterable[str],
    *,
    fields: Sequence[str] = ("*all",),
    expand: Sequence[str] = (),
    max_workers: int | None = None,
    strict: bool = True,
) -> Iterator[list[dict[str, Any]]]:
    """Full issues for `ids` (consumed lazily), 100 per `issue/bulkfetch`, several calls in flight.

    Pages come out in the order of `ids`, and each page is sorted in request order. Ids that
    Jira silently omits (deleted meanwhile, no permission) are simply absent. Ids listed in
    `issueErrors` as not found / not permitted count as absent too. Other `issueErrors` (Jira
    calls those retriable or payload-constrained) are re-requested up to twice; if they still
    fail, `strict` raises `JiraApiError`, otherwise they are logged and skipped.
    """
    field_list = list(fields)
    expand_list = list(expand)

    def fetch(chunk: list[str]) -> list[dict[str, Any]]:
        wanted = chunk
        found: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for _ in range(1 + _BULKFETCH_RETRIES):
            body: dict[str, Any] = {"issueIdsOrKeys": wanted, "fields": field_list, "fieldsByKeys": False}
            if expand_list:
                body["expand"] = expand_list
            data = client.post("issue/bulkfetch", body) or {}
            found.extend(data.get("issues") or [])
            errors = [e for e in data.get("issueErrors") or [] if not _is_missing(e)]
            wanted = [str(e.get("id")) for e in errors if e.get("id") is not None]
            if not wanted:
                break
        if errors:
            detail = "; ".join(f"{e.get('id')}: {e.get('errorMessage')}" for e in errors[:10])
            if strict:
                raise JiraApiError(
                    200,
                    "POST",
                    "issue/bulkfetch",
                    f"{len(errors)} issue(s) could not be fetched after retries: {detail}",
                )
            log.warning("issue/bulkfetch: skipping %d issue(s) Jira could not return: %s", len(errors), detail)
        order = {key: pos for pos, key in enumerate(chunk)}
        found.sort(key=lambda issue: order.get(str(issue.get("id")), order.get(str(issue.get("key")), len(order))))
        return found

    for page in client.map_concurrent(fetch, _chunks((str(i) for i in ids), BULKFETCH_MAX), max_workers=max_workers):
        if page:
            yield page


def _is_missing(error: dict[str, Any]) -> bool:
    """An `issueErrors` entry that means "gone or invisible", not "try again".

    The spec says such issues are simply left out, but Jira Cloud (and our simulator) also list
    them with "Issue does not exist or you do not have permission to see it.". Deleted between
    the id walk and the fetch is a normal race; retrying it is pointless and failing on it wrong.
    """
    msg = str(error.get("errorMessage") or "").lower()
    return "does not exist" in msg or "permission" in msg or "not found" in msg


def worklog_updates(client: JiraClient, since_ms: int) -> Iterator[dict[str, Any]]:
    """Raw pages `{values: [{worklogId, updatedTime}], since, until, lastPage, nextPage}`.

    Jira never returns worklogs changed in the minute before the request, so the caller should
    store the last page's `until` as its next cursor rather than "now". `since` is inclusive:
    entries stamped exactly at the cursor come back on the next call (dedupe on id + time).
    """
    for page in client.paginate("worklog/updated", style="links", params={"since": int(since_ms)}):
        yield page.body


def worklog_deletions(client: JiraClient, since_ms: int) -> Iterator[dict[str, Any]]:
    """Raw pages of deleted worklog ids, same shape and cursor rules as `worklog_updates`."""
    for page in client.paginate("worklog/deleted", style="links", params={"since": int(since_ms)}):
        yield page.body


def worklogs_by_ids(
    client: JiraClient, ids: Iterable[int | str], max_workers: int | None = None
) -> Iterator[list[dict[str, Any]]]:
    """Worklog bodies, `worklog/list` with at most 1000 ids a call, in input order of chunks.
    Ids deleted in the meantime are silently absent from Jira's answer."""

    def fetch(chunk: list[int]) -> list[dict[str, Any]]:
        return client.post("worklog/list", {"ids": chunk}) or []

    for page in client.map_concurrent(fetch, _chunks((int(i) for i in ids), WORKLOG_LIST_MAX), max_workers=max_workers):
        if page:
            yield page


def comments_by_ids(
    client: JiraClient, ids: Iterable[int | str], max_workers: int | None = None
) -> Iterator[list[dict[str, Any]]]:
    """Comment bodies via `comment/list` (at most 1000 ids a call; its answer is a PageBean)."""

    def fetch(chunk: list[int]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for page in client.paginate("comment/list", style="offset", method="POST", json={"ids": chunk}):
            out.extend(page.items)
        return out

    for page in client.map_concurrent(fetch, _chunks((int(i) for i in ids), WORKLOG_LIST_MAX), max_workers=max_workers):
        if page:
            yield page


# --------------------------------------------------------------------------------------- JQL dates

_MINUTE = timedelta(minutes=1)
_JQL_FORMAT = "%Y/%m/%d %H:%M"


def jql_datetime(instant: datetime, tz: str | tzinfo, *, bound: Literal["lower", "upper"]) -> str:
    """A JQL date literal `yyyy/MM/dd HH:mm` (unquoted) for `instant`, in the zone `tz` of the
    searching user (`/myself` -> `timeZone`).

    JQL reads such literals in that user's zone at minute granularity, so a UTC string silently
    shifts the window by the UTC offset, and around DST changes a wall time can mean two instants
    (fold) or none (gap). The literal is chosen so that *every* possible reading is on the safe
    side: for `bound="lower"` every reading is <= `instant` (floor to the minute, then step back
    past a fold), for `bound="upper"` every reading is >= `instant` (ceil, then step forward past
    a fold or gap). Windows built from it overlap slightly instead of missing issues; dedupe on
    `(id, updated)` downstream.
    """
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError("jql_datetime needs a timezone-aware instant")
    if bound not in ("lower", "upper"):
        raise ValueError("bound must be 'lower' or 'upper'")
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    target = instant.astimezone(UTC)
    local = target.astimezone(zone).replace(tzinfo=None)
    cand = local.replace(second=0, microsecond=0)
    if bound == "upper" and cand != local:
        cand += _MINUTE
    for _ in range(1000):
        earliest, latest = _readings(cand, zone)
        if bound == "lower":
            if latest <= target:
                return cand.strftime(_JQL_FORMAT)
            cand -= _MINUTE * max(1, math.ceil((latest - target) / _MINUTE))
        else:
            if earliest >= target:
                return cand.strftime(_JQL_FORMAT)
            cand += _MINUTE * max(1, math.ceil((target - earliest) / _MINUTE))
    raise ValueError(f"could not find a safe JQL literal for {instant.isoformat()} in {zone}")  # pragma: no cover


def _readings(wall: datetime, zone: tzinfo) -> tuple[datetime, datetime]:
    """Earliest and latest UTC instant a naive wall time may denote in `zone`.

    In a fold the two PEP 495 readings differ by the DST shift; in a gap the wall time does not
    exist and Java-based Jira resolves it by shifting, which lands on one of the two readings too.
    """
    a = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    b = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    return min(a, b), max(a, b)


def _jql_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def updated_window_jql(
    start: datetime | None,
    end: datetime | None,
    tz: str | tzinfo,
    *,
    projects: Sequence[str] | None = None,
    order_by: str | None = "updated ASC",
) -> str:
    """`updated >= lower AND updated < upper [AND project in (...)] ORDER BY ...` for [start, end).

    `search/jql` refuses unbounded queries, hence at least one bound is required. Bounds are
    widened to whole minutes in the user's zone (see `jql_datetime`), never narrowed. Do not pass
    archived projects in `projects`: Jira may reject the query.
    """
    if start is None and end is None:
        raise ValueError("updated_window_jql needs at least one bound (Jira rejects unbounded JQL)")
    if start is not None and end is not None and end <= start:
        raise ValueError(f"empty window: end {end.isoformat()} <= start {start.isoformat()}")
    clauses: list[str] = []
    if start is not None:
        clauses.append(f"updated >= {_jql_string(jql_datetime(start, tz, bound='lower'))}")
    if end is not None:
        clauses.append(f"updated < {_jql_string(jql_datetime(end, tz, bound='upper'))}")
    if projects is not None:
        if not projects:
            raise ValueError("projects=[] would match nothing; pass None for all projects")
        clauses.append(f"project in ({', '.join(_jql_string(p) for p in projects)})")
    jql = " AND ".join(clauses)
    return f"{jql} ORDER BY {order_by}" if order_by else jql


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Lazy fixed-size chunks (itertools.batched is 3.12+)."""
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk
