"""Jobs and schedules: the incremental sync, the daily reconciliation, and the grant keep-alive."""

import os
from datetime import UTC, datetime

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    Failure,
    OpExecutionContext,
    RunRequest,
    ScheduleEvaluationContext,
    define_asset_job,
    job,
    op,
    schedule,
)

from jira_pipeline.defs.assets import POOL
from jira_pipeline.defs.resources import JiraOAuthResource
from jira_pipeline.grants import grant_health

JIRA_ASSETS = AssetSelection.groups("jira")

#: One Jira-heavy run per site at a time: dagster.yaml limits runs per unique `jira/cloud_id` tag.
SYNC_TAGS = {"jira/cloud_id": "all"}

jira_sync_job = define_asset_job(
    "jira_sync_job",
    selection=JIRA_ASSETS,
    tags=SYNC_TAGS,
    description="Projects, users, and the issues/worklogs changed in the selected window (incremental for today).",
)

jira_reconcile_job = define_asset_job(
    "jira_reconcile_job",
    selection=JIRA_ASSETS,
    tags=SYNC_TAGS,
    config={"ops": {"jira__issues": {"config": {"reconcile": True, "lookback_hours": 72}}}},
    description="Daily: the sync plus a 72-hour look-back and a full deletion reconciliation.",
)


def current_partition_key(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%d")


def _cron(var: str, default: str) -> str:
    # Cron strings are structure (the daemon reads them at load), like the partition start date.
    return os.environ.get(var, "").strip() or default


@schedule(
    job=jira_sync_job,
    cron_schedule=_cron("JIRA_SYNC_CRON", "*/30 * * * *"),
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
    description="Incremental sync of every connected site (JIRA_SYNC_CRON, default every 30 minutes).",
)
def jira_incremental_schedule(context: ScheduleEvaluationContext) -> RunRequest:
    key = current_partition_key(context.scheduled_execution_time)
    return RunRequest(run_key=None, partition_key=key)


@schedule(
    job=jira_reconcile_job,
    cron_schedule=_cron("JIRA_RECONCILE_CRON", "15 3 * * *"),
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
    description="Daily reconciliation: deletions and a 72-hour look-back for late search-index updates.",
)
def jira_reconcile_schedule(context: ScheduleEvaluationContext) -> RunRequest:
    return RunRequest(run_key=None, partition_key=current_partition_key(context.scheduled_execution_time))


@op(pool=POOL, description="Refresh every stored grant; warn 30 days before Atlassian's 365-day expiry.")
def refresh_all_grants(context: OpExecutionContext, oauth: JiraOAuthResource) -> None:
    """Atlassian expires a grant whose refresh token is unused for 90 days; a daily refresh keeps
    every grant alive even when no sync runs (e.g. all sites deselected)."""
    manager = oauth.grants()
    results = manager.refresh_all()
    for row in manager.warehouse.list_grants():
        health = grant_health(row)
        if health["absolute_expiry_soon"]:
            context.log.warning(
                f"Grant {row['grant_id']} reaches Atlassian's 365-day limit on "
                f"{health['absolute_expiry_at']:%Y-%m-%d}: run `jira-pipeline connect` before then."
            )
    failed = [r for r in results if not r["ok"]]
    for result in results:
        context.log.info(f"grant {result['grant_id']}: {'refreshed' if result['ok'] else result['error']}")
    if failed:
        raise Failure(description="; ".join(f"{r['grant_id']}: {r['error']}" for r in failed), allow_retries=False)


@job(description="Keeps every Atlassian grant alive (90-day inactivity expiry) and warns before the 365-day one.")
def jira_grant_keepalive_job() -> None:
    refresh_all_grants()


@schedule(
    job=jira_grant_keepalive_job,
    cron_schedule=_cron("JIRA_KEEPALIVE_CRON", "0 4 * * *"),
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
)
def jira_grant_keepalive_schedule(context: ScheduleEvaluationContext) -> RunRequest:
    return RunRequest(run_key=None)


JOBS = [jira_sync_job, jira_reconcile_job, jira_grant_keepalive_job]
SCHEDULES = [jira_incremental_schedule, jira_reconcile_schedule, jira_grant_keepalive_schedule]
