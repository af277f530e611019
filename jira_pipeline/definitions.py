"""The one Definitions object of jira_pipeline (CONTRACT §3)."""

from __future__ import annotations

from dagster import Definitions, EnvVar, in_process_executor

from jira_pipeline.defs.assets import ASSETS
from jira_pipeline.defs.checks import CHECKS
from jira_pipeline.defs.jobs import JOBS, SCHEDULES
from jira_pipeline.defs.resources import JiraOAuthResource, JiraResource, WarehouseResource

_store = WarehouseResource()
_oauth = JiraOAuthResource(
    client_id=EnvVar("ATLASSIAN_CLIENT_ID"),
    client_secret=EnvVar("ATLASSIAN_CLIENT_SECRET"),
    store=_store,
)

defs = Definitions(
    # One process per run, not per step: the Jira work is I/O in threads inside each step, and the
    # multiprocess executor would spend ~4 s starting each of the 4 assets and 7 checks.
    executor=in_process_executor,
    assets=ASSETS,
    asset_checks=CHECKS,
    jobs=JOBS,
    schedules=SCHEDULES,
    resources={
        "store": _store,
        "oauth": _oauth,
        "jira": JiraResource(oauth=_oauth),
    },
)
