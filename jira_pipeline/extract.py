"""The incremental sync of one Jira site: pages from `atlassian.streams` -> rows -> `warehouse`.

This is business logic, kept out of the Dagster glue so the assets stay thin and the same code runs
from `jira-pipeline sync`, the schedule and backfills.

Cursors (`jira_sync_state`) record a *contiguous coverage* `{"from": t0, "to": t1}`: every change in
[t0, t1) has been written. The run whose window contains *now* starts at `to - overlap` when the
coverage reaches back to its window start (so a 30-minute schedule reads 30 minutes of changes, and
a sync after a pause catches up across days), else at the window start. Past windows (backfills)
read exactly their window and may extend the coverage backwards; they never move `to`. The cursor
commits in the same transaction as the last batch it covers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from jira_pipeline.atlassian import streams
from jira_pipeline.atlassian.client import JiraClient
from jira_pipeline.mapping import issue_row, project_row, user_row, worklog_row
from jira_pipeline.warehouse.parquet import ParquetSink
from jira_pipeline.warehouse.store import BatchResult, Warehouse

#: JQL reads literals at minute granularity and the search index lags writes by seconds: re-read a
#: few minutes before the cursor and let "newer `updated` wins" dedupe.
DEFAULT_OVERLAP = timedelta(minutes=5)
#: Rows per transaction / Parquet file: big enough for few files, small enough to stream.
DEFAULT_BATCH_ROWS = 500


@dataclass
class StreamStats:
    table: str
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    fetched: int = 0
    cursor: str | None = None
    files: list[str] = field(default_factory=list)

    def add(self, result: BatchResult) -> None:
        self.inserted += result.inserted
        self.updated += result.updated
        self.unchanged += result.unchanged
        self.deleted += result.deleted

    def merge(self, other: StreamStats) -> None:
        self.inserted += other.inserted
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.deleted += other.deleted
        self.fetched += other.fetched
        self.files.extend(other.files)


@dataclass
class SiteSync:
    """Everything one site's sync needs; built by the Dagster resource or the CLI."""

    cloud_id: str
    site_url: str
    client: JiraClient
    warehouse: Warehouse
    sink: ParquetSink
    log: logging.Logger
    overlap: timedelta = DEFAULT_OVERLAP
    batch_rows: int = DEFAULT_BATCH_ROWS
    max_workers: int | None = None

    # ------------------------------------------------------------------ writing
    def _sink(self, stats: StreamStats):
        def write(table: str, rows: list[dict[str, Any]]) -> None:
            stats.files.extend(str(p) for p in self.sink.write(table, rows))

        return write

    def _write(
        self,
        table: str,
        rows: Iterable[dict[str, Any]],
        stats: StreamStats,
        cursor: tuple[str, str | Callable[[], str]] | None = None,
    ) -> None:
        """Write rows in batches; the cursor (stream, value) rides with the last batch. The value may be a
        callable, evaluated once the rows are exhausted (a feed's last position is known only then)."""
        batch: list[dict[str, Any]] = []
        for row in rows:
            batch.append(row)
            stats.fetched += 1
            if len(batch) >= self.batch_rows:
                stats.add(self.warehouse.write_batch(table, batch, sink=self._sink(stats)))
                batch = []
        full_cursor = None
        if cursor:
            value = cursor[1]() if callable(cursor[1]) else cursor[1]
            full_cursor = (self.cloud_id, cursor[0], value)
        if batch:
            stats.add(self.warehouse.write_batch(table, batch, cursor=full_cursor, sink=self._sink(stats)))
        elif full_cursor:
            self.warehouse.set_cursor(*full_cursor)

    def _soft_delete(self, table: str, keys: Iterable[str], stats: StreamStats, deleted_at: datetime | None = None):
        keys = list(keys)
        if keys:
            stats.add(
                self.warehouse.soft_delete(table, self.cloud_id, keys, deleted_at=deleted_at, sink=self._sink(stats))
            )

    # ------------------------------------------------------------------ full-refresh streams
    def sync_projects(self) -> StreamStats:
        """All projects incl. archived; projects Jira no longer returns are soft-deleted."""
        stats = StreamStats("jira_projects")
        seen: set[str] = set()

        def rows() -> Iterator[dict[str, Any]]:
            for page in streams.projects(self.client, statuses=("live", "archived")):
                for project in page:
                    row = project_row(self.cloud_id, self.site_url, project)
                    seen.add(row["id"])
                    yield row

        self._write("jira_projects", rows(), stats)
        gone = self.warehouse.soft_delete_absent("jira_projects", self.cloud_id, seen, sink=self._sink(stats))
        stats.deleted += gone.deleted  # its `unchanged` counts the rows it kept: already counted above
        return stats

    def sync_users(self) -> StreamStats:
        """Every user the grant may see; users no longer returned are soft-deleted."""
        stats = StreamStats("jira_users")
        seen: set[str] = set()

        def rows() -> Iterator[dict[str, Any]]:
            for page in streams.users(self.client):
                for user in page:
                    row = user_row(self.cloud_id, user)
                    if row["account_id"] in seen:  # users/search can repeat a user across pages
                        continue
                    seen.add(row["account_id"])
                    yield row

        self._write("jira_users", rows(), stats)
        gone = self.warehouse.soft_delete_absent("jira_users", self.cloud_id, seen, sink=self._sink(stats))
        stats.deleted += gone.deleted
        return stats

    # ------------------------------------------------------------------ coverage cursors
    def _coverage(self, stream: str) -> tuple[datetime, datetime] | None:
        raw = self.warehouse.get_cursor(self.cloud_id, stream)
        if not raw:
            return None
        try:
            value = json.loads(raw)
            return datetime.fromisoformat(value["from"]), datetime.fromisoformat(value["to"])
        except (ValueError, KeyError, TypeError):
            self.log.warning("Ignoring unreadable %s cursor %r; reading the whole window", stream, raw)
            return None

    @staticmethod
    def _encode(start: datetime, end: datetime) -> str:
        return json.dumps({"from": start.astimezone(UTC).isoformat(), "to": end.astimezone(UTC).isoformat()})

    def _plan(
        self, stream: str, window_start: datetime, window_end: datetime, now: datetime
    ) -> tuple[datetime, datetime | None, str | None]:
        """(read from, read until or None for open-ended, cursor to commit or None)."""
        coverage = self._coverage(stream)
        if window_end > now:  # the window that contains now: incremental
            if coverage and coverage[0] <= window_start:
                start = max(coverage[0], coverage[1] - self.overlap)
                return start, None, self._encode(coverage[0], now)
            return window_start, None, self._encode(window_start, now)
        # a past window: read exactly it; extend the coverage backwards when it touches it
        if coverage and window_start < coverage[0] <= window_end:
            return window_start, window_end, self._encode(window_start, coverage[1])
        return window_start, window_end, None

    # ------------------------------------------------------------------ issues
    _field_names: dict[str, str] | None = field(default=None, init=False, repr=False)

    def _issue_row(self, issue: dict[str, Any]) -> dict[str, Any]:
        if self._field_names is None:  # one /field call per sync: custom-field ids -> display names
            self._field_names = {f["id"]: f.get("name") or f["id"] for f in streams.fields(self.client)}
        return issue_row(self.cloud_id, self.site_url, issue, self._field_names)

    def sync_issues(
        self,
        window_start: datetime,
        window_end: datetime,
        *,
        now: datetime | None = None,
        reconcile: bool | None = None,
        lookback: timedelta | None = None,
    ) -> StreamStats:
        """Changed issues in the window: ids by a cheap bounded JQL walk, bodies by bulkfetch in 100s.
        `lookback` re-reads further back than the cursor (repairs changes the search index showed late)."""
        now = now or datetime.now(UTC)
        stats = StreamStats("jira_issues")
        tz = streams.myself(self.client).get("timeZone") or "UTC"
        start, end, cursor = self._plan("issues", window_start, window_end, now)
        if lookback:
            start = min(start, now - lookback)
        jql = streams.updated_window_jql(start, end, tz, order_by="id ASC")
        self.log.info("jira/issues %s: reading %s (user time zone %s)", self.cloud_id, jql, tz)
        self._write(
            "jira_issues",
            self._issue_rows(streams.issue_ids(self.client, jql)),
            stats,
            cursor=("issues", cursor) if cursor else None,
        )
        stats.cursor = cursor
        if window_end > now:
            self.harvest_archived_projects(stats, now)
        if reconcile if reconcile is not None else window_end > now:
            self.reconcile_issues(stats)
        return stats

    def harvest_archived_projects(self, stats: StreamStats, now: datetime) -> None:
        """Issues of archived projects never appear in search, but bulkfetch still returns them by key.
        Archived projects are read-only, so each is harvested once: keys KEY-1, KEY-2, ... in pages of
        100 until two pages in a row come back empty (numbering has gaps where issues were deleted or
        moved away)."""
        for page in streams.projects(self.client, statuses=("archived",)):
            for project in page:
                stream = f"archived_project:{project['id']}"
                if self.warehouse.get_cursor(self.cloud_id, stream):
                    continue
                found: set[str] = set()
                number, empty_pages = 1, 0
                while empty_pages < 2:
                    keys = [f"{project['key']}-{n}" for n in range(number, number + 100)]
                    number += 100
                    rows = [
                        self._issue_row(issue)
                        for chunk in streams.issues_by_ids(self.client, keys, max_workers=self.max_workers)
                        for issue in chunk
                    ]
                    empty_pages = 0 if rows else empty_pages + 1
                    found.update(row["id"] for row in rows)
                    if rows:
                        self._write("jira_issues", rows, stats)
                self.log.info(
                    "jira/issues %s: harvested %d issue(s) of archived project %s",
                    self.cloud_id, len(found), project["key"],
                )  # fmt: skip
                # What we knew of the project but the harvest didn't find was deleted before the archiving.
                known = self.warehouse.live_keys(
                    "jira_issues", self.cloud_id, where={"project_id": [str(project["id"])]}
                )
                self._delete_confirmed(known - found, stats)
                self.warehouse.set_cursor(
                    self.cloud_id, stream, json.dumps({"harvested_at": now.isoformat(), "issues": len(found)})
                )

    def _issue_rows(self, id_pages: Iterable[list[str]]) -> Iterator[dict[str, Any]]:
        seen: dict[str, datetime] = {}  # dedupe on (id, updated) across overlapping pages
        for ids in id_pages:
            fresh = [i for i in ids if i not in seen]
            for page in streams.issues_by_ids(self.client, fresh, max_workers=self.max_workers):
                for issue in page:
                    row = self._issue_row(issue)
                    if seen.get(row["id"]) == row["updated"]:
                        continue
                    seen[row["id"]] = row["updated"]
                    yield row

    def reconcile_issues(self, stats: StreamStats) -> None:
        """Soft-delete issues that vanished: an id-only walk per live project (archived projects' issues
        are invisible to search, so they are left alone). Every missing id is confirmed with bulkfetch
        first: an issue moved into an archived project still exists and is updated in place instead."""
        live_projects = [p for page in streams.projects(self.client, statuses=("live",)) for p in page]
        present: set[str] = set()
        for project in live_projects:
            for ids in streams.issue_ids(self.client, f"project = {project['id']}"):
                present.update(ids)
        scope = [str(p["id"]) for p in live_projects]
        known = self.warehouse.live_keys("jira_issues", self.cloud_id, where={"project_id": scope})
        self._delete_confirmed(known - present, stats)

    def _delete_confirmed(self, missing: set[str], stats: StreamStats) -> None:
        """Soft-delete issues (and their worklogs) that bulkfetch confirms are gone; those it still returns
        (e.g. moved into an archived project) are updated in place instead."""
        if not missing:
            return
        still_there: list[dict[str, Any]] = []
        for page in streams.issues_by_ids(self.client, sorted(missing), max_workers=self.max_workers):
            still_there.extend(self._issue_row(issue) for issue in page)
        if still_there:
            self._write("jira_issues", still_there, stats)
        gone = missing - {row["id"] for row in still_there}
        if gone:
            self.log.info("jira/issues %s: %d issue(s) deleted in Jira; soft-deleting", self.cloud_id, len(gone))
            self._soft_delete("jira_issues", gone, stats)
            orphans = self.warehouse.live_keys("jira_worklogs", self.cloud_id, where={"issue_id": sorted(gone)})
            self._soft_delete("jira_worklogs", orphans, stats)

    # ------------------------------------------------------------------ worklogs
    def sync_worklogs(
        self, window_start: datetime, window_end: datetime, *, now: datetime | None = None
    ) -> StreamStats:
        """Worklogs changed in the window via the site-wide feeds: /worklog/updated -> /worklog/list, and
        /worklog/deleted -> soft delete. No per-issue requests. The feed never returns the last minute,
        so the coverage ends at the feed's last `until`, not at now."""
        now = now or datetime.now(UTC)
        stats = StreamStats("jira_worklogs")
        previous = self._coverage("worklogs")
        start, end, cursor = self._plan("worklogs", window_start, window_end, now)
        since_ms = int(start.timestamp() * 1000)
        end_ms = int(end.timestamp() * 1000) if end else None
        feed_until = [since_ms]

        def ids() -> Iterator[str]:
            for page in streams.worklog_updates(self.client, since_ms):
                values = page.get("values") or []
                if page.get("until") is not None:
                    feed_until[0] = int(page["until"])
                for value in values:
                    if end_ms is not None and value.get("updatedTime", 0) >= end_ms:
                        return
                    yield str(value["worklogId"])

        def rows() -> Iterator[dict[str, Any]]:
            for page in streams.worklogs_by_ids(self.client, ids(), max_workers=self.max_workers):
                for worklog in page:
                    yield worklog_row(self.cloud_id, worklog)

        def cursor_value() -> str:
            assert cursor is not None
            if end is not None:
                return cursor  # a past window: only the coverage start moved
            # An empty feed answers `until == since`: never move the coverage backwards.
            floor = previous[1] if previous and previous[0] <= start <= previous[1] else start
            covered_to = max(datetime.fromtimestamp(feed_until[0] / 1000, UTC), floor)
            return json.dumps({"from": json.loads(cursor)["from"], "to": covered_to.isoformat()})

        self._write("jira_worklogs", rows(), stats, cursor=("worklogs", cursor_value) if cursor else None)
        stats.cursor = self.warehouse.get_cursor(self.cloud_id, "worklogs")
        self._sync_worklog_deletions(since_ms, stats)
        return stats

    def _sync_worklog_deletions(self, since_ms: int, stats: StreamStats) -> None:
        for page in streams.worklog_deletions(self.client, since_ms):
            ids = sorted({str(v["worklogId"]) for v in page.get("values") or []})
            if ids:
                self._soft_delete(
                    "jira_worklogs", self.warehouse.live_keys("jira_worklogs", self.cloud_id, where={"id": ids}), stats
                )
