"""The four Jira assets. Thin: resources give clients and storage, `extract.SiteSync` does the work.

`jira/issues` and `jira/worklogs` are daily-partitioned on `updated` with a single-run backfill
policy: a range backfill is one run whose `partition_time_window` spans the range (reading
`partition_key` here would break ranges).
"""

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from dagster import (
    AssetExecutionContext,
    BackfillPolicy,
    Backoff,
    Config,
    DailyPartitionsDefinition,
    Failure,
    FreshnessPolicy,
    Jitter,
    MaterializeResult,
    MetadataValue,
    RetryPolicy,
    TableColumn,
    TableSchema,
    asset,
)

from jira_pipeline.atlassian.client import JiraApiError
from jira_pipeline.atlassian.oauth import AmbiguousRefresh, OAuthError
from jira_pipeline.defs.resources import JiraResource
from jira_pipeline.extract import SiteSync, StreamStats
from jira_pipeline.settings import ConfigError, parse_start_date
from jira_pipeline.warehouse.tables import TABLES

GROUP = "jira"
POOL = "jira_api"
OWNERS = ["team:ainexlayer"]

# Partitions are structure, not configuration of a run: Dagster needs the start date when it loads the
# code location, so it is read here (and only here) from the environment.
PARTITIONS = DailyPartitionsDefinition(
    start_date=parse_start_date(os.environ.get("JIRA_START_DATE")).isoformat(),
    end_offset=1,  # include today's partition: the incremental sync runs the window that contains now
    timezone="UTC",
)

#: Transient failures (network, 5xx beyond the client's own retries, a refresh with no answer) get a
#: few more tries with backoff; permanent ones are raised as Failure(allow_retries=False).
RETRY = RetryPolicy(max_retries=3, delay=20, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)
FRESHNESS = FreshnessPolicy.time_window(fail_window=timedelta(hours=3), warn_window=timedelta(hours=1))
KINDS = {"jira", "python", "parquet"}


class IssuesConfig(Config):
    """Run config of `jira/issues`."""

    reconcile: bool | None = None
    """Walk every live project's ids to soft-delete vanished issues. Default: when the window contains now."""
    lookback_hours: int = 0
    """Also re-read changes this many hours back (the daily reconciliation job repairs search-index lag)."""


def column_schema(table: str) -> TableSchema:
    spec = TABLES[table]
    return TableSchema(columns=[TableColumn(name, spec.column_types[name]) for name in spec.table.columns.keys()])


@contextmanager
def _permanent_errors_fail_fast() -> Iterator[None]:
    """A revoked grant, wrong config or a 4xx that retrying can't fix must not burn run retries."""
    try:
        yield
    except AmbiguousRefresh:
        raise  # transient by nature: let the retry policy try again after the leeway
    except (OAuthError, ConfigError) as exc:
        raise Failure(description=str(exc), allow_retries=False) from None
    except JiraApiError as exc:
        if exc.status in (400, 401, 403, 404, 410):
            raise Failure(description=str(exc), allow_retries=False) from None
        raise


def _materialize(
    context: AssetExecutionContext, jira: JiraResource, table: str, work: Callable[[SiteSync], StreamStats]
) -> MaterializeResult:
    with _permanent_errors_fail_fast():
        syncs = jira.site_syncs(context.log)
        total = StreamStats(table)
        per_site = {}
        requests = 0
        for sync in syncs:
            stats = work(sync)
            total.merge(stats)
            requests += sync.client.stats.requests
            per_site[sync.cloud_id] = {
                "inserted": stats.inserted,
                "updated": stats.updated,
                "deleted": stats.deleted,
                "unchanged": stats.unchanged,
                "cursor": stats.cursor,
            }
            context.log.info(
                f"{table} {sync.cloud_id}: fetched {stats.fetched}, inserted {stats.inserted}, "
                f"updated {stats.updated}, soft-deleted {stats.deleted}, unchanged {stats.unchanged}"
            )
        warehouse = jira.oauth.store.warehouse()
        sink = jira.oauth.store.sink()
        return MaterializeResult(
            metadata={
                "dagster/row_count": MetadataValue.int(warehouse.count(table, include_deleted=False)),
                "dagster/column_schema": column_schema(table),
                "dagster/table_name": f"{warehouse.safe_url} :: {table}",
                "dagster/uri": MetadataValue.path(sink.dataset_uri(table)),
                "inserted": total.inserted,
                "updated": total.updated,
                "soft_deleted": total.deleted,
                "unchanged": total.unchanged,
                "fetched": total.fetched,
                "parquet_files": len(total.files),
                "api_requests": requests,
                "sites": MetadataValue.json(per_site),
            }
        )


def _window(context: AssetExecutionContext) -> tuple[datetime, datetime]:
    window = context.partition_time_window
    return window.start.astimezone(UTC), window.end.astimezone(UTC)


_COMMON = dict(
    group_name=GROUP,
    key_prefix=["jira"],
    owners=OWNERS,
    kinds=KINDS,
    pool=POOL,
    retry_policy=RETRY,
    freshness_policy=FRESHNESS,
)


@asset(name="projects", description="Every Jira project (live and archived); vanished ones soft-deleted.", **_COMMON)
def projects(context: AssetExecutionContext, jira: JiraResource) -> MaterializeResult:
    return _materialize(context, jira, "jira_projects", lambda s: s.sync_projects())


@asset(name="users", description="Every Jira user the grant can see; vanished ones soft-deleted.", **_COMMON)
def users(context: AssetExecutionContext, jira: JiraResource) -> MaterializeResult:
    return _materialize(context, jira, "jira_users", lambda s: s.sync_users())


@asset(
    name="issues",
    description="Issues by `updated` day: id walk via /search/jql, bodies via /issue/bulkfetch; deletions reconciled.",
    partitions_def=PARTITIONS,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[projects],
    **_COMMON,
)
def issues(context: AssetExecutionContext, jira: JiraResource, config: IssuesConfig) -> MaterializeResult:
    start, end = _window(context)
    lookback = timedelta(hours=config.lookback_hours) if config.lookback_hours else None
    return _materialize(
        context, jira, "jira_issues", lambda s: s.sync_issues(start, end, reconcile=config.reconcile, lookback=lookback)
    )


@asset(
    name="worklogs",
    description="Worklogs by `updated` day from the site-wide /worklog/updated and /worklog/deleted feeds.",
    partitions_def=PARTITIONS,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[issues],
    **_COMMON,
)
def worklogs(context: AssetExecutionContext, jira: JiraResource) -> MaterializeResult:
    start, end = _window(context)
    return _materialize(context, jira, "jira_worklogs", lambda s: s.sync_worklogs(start, end))


ASSETS = [projects, users, issues, worklogs]
