"""The one Definitions object of jira_pipeline (CONTRACT §3)."""

from __future__ import annotations

from dagster import Definitions, EnvVar

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
