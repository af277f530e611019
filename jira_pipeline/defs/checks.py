"""Asset checks: keys unique, Markdown really converted, issue counts complete against Jira."""

from dagster import AssetCheckResult, AssetCheckSeverity, AssetKey, asset_check

from jira_pipeline.atlassian import streams
from jira_pipeline.atlassian.adf import looks_like_raw_adf
from jira_pipeline.defs.resources import JiraResource, WarehouseResource

TABLE_OF = {
    "projects": "jira_projects",
    "users": "jira_users",
    "issues": "jira_issues",
    "worklogs": "jira_worklogs",
}


def _unique_keys_check(name: str):
    table = TABLE_OF[name]

    @asset_check(
        asset=AssetKey(["jira", name]),
        name="unique_keys",
        blocking=True,
        description=f"{table} has exactly one row per key (cloud_id + id).",
    )
    def _check(store: WarehouseResource) -> AssetCheckResult:
        duplicates = store.warehouse().duplicate_keys(table)
        return AssetCheckResult(passed=duplicates == 0, metadata={"duplicate_keys": duplicates})

    return _check


def _markdown_check(name: str, key_column: str, text_column: str):
    table = TABLE_OF[name]

    @asset_check(
        asset=AssetKey(["jira", name]),
        name="markdown_not_raw_adf",
        description=f"No {table}.{text_column} is left as raw ADF JSON or a Python repr.",
    )
    def _check(store: WarehouseResource) -> AssetCheckResult:
        # Streams two columns: loading whole rows (raw + fields JSON) of 20k issues costs gigabytes.
        bad = [
            row[key_column]
            for row in store.warehouse().iter_columns(table, (key_column, text_column))
            if looks_like_raw_adf(row[text_column])
        ]
        return AssetCheckResult(passed=not bad, metadata={"offending": bad[:20], "count": len(bad)})

    return _check


@asset_check(
    asset=AssetKey(["jira", "issues"]),
    name="complete_against_jira",
    pool="jira_api",
    description="Per live project, the live issue rows match Jira's /search/approximate-count.",
)
def issues_complete(jira: JiraResource) -> AssetCheckResult:
    """approximate-count is, as its name says, approximate and lags writes: allow 1% (at least 2) slack."""
    warehouse = jira.oauth.store.warehouse()
    report = {}
    passed = True
    for site in jira.sites():
        client = jira.client(site)
        for page in streams.projects(client, statuses=("live",)):
            for project in page:
                expected = streams.approximate_count(client, f"project = {project['id']}")
                stored = len(
                    warehouse.live_keys("jira_issues", site.cloud_id, where={"project_id": [str(project["id"])]})
                )
                ok = abs(expected - stored) <= max(2, expected // 100)
                passed &= ok
                report[f"{site.name or site.cloud_id}/{project['key']}"] = {
                    "jira": expected,
                    "stored": stored,
                    "ok": ok,
                }
    return AssetCheckResult(passed=passed, severity=AssetCheckSeverity.WARN, metadata={"projects": report})


CHECKS = [
    *(_unique_keys_check(n) for n in TABLE_OF),
    _markdown_check("issues", "key", "description"),
    _markdown_check("worklogs", "id", "comment"),
    issues_complete,
]
