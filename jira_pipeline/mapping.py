"""Jira API objects -> rows of CONTRACT §4. Pure functions: no HTTP, no SQL, no Dagster.

Jira renders timestamps with the *searching user's* offset ("2024-03-01T10:15:30.123+1100"); every
timestamp is normalised to aware UTC here so comparisons ("newer `updated` wins") are exact.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from jira_pipeline.atlassian.adf import adf_to_markdown


class MappingError(ValueError):
    """An API object lacks what a row needs; names the object so the payload can be inspected."""


def parse_jira_datetime(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000, UTC)
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        raise MappingError(f"unparseable Jira timestamp {value!r}") from None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _get(obj: Any, *path: str) -> Any:
    for part in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def _browse(site_url: str, key: str) -> str:
    return f"{site_url.rstrip('/')}/browse/{key}"


def project_row(cloud_id: str, site_url: str, project: dict[str, Any]) -> dict[str, Any]:
    if "id" not in project or "key" not in project:
        raise MappingError(f"project object without id/key: {sorted(project)[:10]}")
    return {
        "cloud_id": cloud_id,
        "id": str(project["id"]),
        "key": project["key"],
        "name": project.get("name"),
        "project_type_key": project.get("projectTypeKey"),
        "is_private": bool(project.get("isPrivate", False)),
        "lead_account_id": _get(project, "lead", "accountId"),
        "is_archived": bool(project.get("archived", False)),
        "url": _browse(site_url, project["key"]),
        "raw": project,
    }


def user_row(cloud_id: str, user: dict[str, Any]) -> dict[str, Any]:
    if "accountId" not in user:
        raise MappingError(f"user object without accountId: {sorted(user)[:10]}")
    return {
        "cloud_id": cloud_id,
        "account_id": user["accountId"],
        "account_type": user.get("accountType"),
        "display_name": user.get("displayName"),
        "email_address": user.get("emailAddress") or None,
        "active": bool(user.get("active", True)),
        "time_zone": user.get("timeZone"),
        "raw": user,
    }


def readable_value(value: Any) -> Any:
    """A custom field's value as a person reads it: Jira returns options, users and rich text as objects."""
    if isinstance(value, list):
        return [readable_value(v) for v in value]
    if isinstance(value, dict):
        if value.get("type") == "doc":
            return adf_to_markdown(value)
        for attr in ("value", "displayName", "name", "key"):
            if attr in value:
                child = value.get("child")
                base = value[attr]
                return f"{base} / {readable_value(child)}" if isinstance(child, dict) else base
        return value
    return value


def issue_row(
    cloud_id: str, site_url: str, issue: dict[str, Any], field_names: dict[str, str] | None = None
) -> dict[str, Any]:
    fields = issue.get("fields")
    if "id" not in issue or "key" not in issue or not isinstance(fields, dict):
        raise MappingError(f"issue object without id/key/fields: {sorted(issue)[:10]}")
    project = fields.get("project") or {}
    key = issue["key"]
    updated = parse_jira_datetime(fields.get("updated"))
    if updated is None:
        raise MappingError(f"issue {key} has no fields.updated; was it fetched with fields=*all?")
    labels = fields.get("labels")
    return {
        "cloud_id": cloud_id,
        "id": str(issue["id"]),
        "key": key,
        "project_id": str(project["id"]) if project.get("id") is not None else None,
        "project_key": project.get("key") or key.rsplit("-", 1)[0],
        "issue_type": _get(fields, "issuetype", "name"),
        "status": _get(fields, "status", "name"),
        "status_category": _get(fields, "status", "statusCategory", "key"),
        "priority": _get(fields, "priority", "name"),
        "summary": fields.get("summary"),
        "description": adf_to_markdown(fields.get("description")) if fields.get("description") else None,
        "reporter_account_id": _get(fields, "reporter", "accountId"),
        "assignee_account_id": _get(fields, "assignee", "accountId"),
        "created": parse_jira_datetime(fields.get("created")),
        "updated": updated,
        "resolution_date": parse_jira_datetime(fields.get("resolutiondate")),
        "labels": list(labels) if isinstance(labels, list) else [],
        "parent_key": _get(fields, "parent", "key"),
        "url": _browse(site_url, key),
        "fields": fields,
        "custom_fields": {
            (field_names or {}).get(fid, fid): readable_value(value)
            for fid, value in fields.items()
            if fid.startswith("customfield_") and value not in (None, "", [], {})
        },
        "raw": issue,
    }


def worklog_row(cloud_id: str, worklog: dict[str, Any]) -> dict[str, Any]:
    if "id" not in worklog or "issueId" not in worklog:
        raise MappingError(f"worklog object without id/issueId: {sorted(worklog)[:10]}")
    comment = worklog.get("comment")
    return {
        "cloud_id": cloud_id,
        "id": str(worklog["id"]),
        "issue_id": str(worklog["issueId"]),
        "author_account_id": _get(worklog, "author", "accountId"),
        "started": parse_jira_datetime(worklog.get("started")),
        "time_spent_seconds": worklog.get("timeSpentSeconds"),
        "comment": adf_to_markdown(comment) if comment else None,
        "created": parse_jira_datetime(worklog.get("created")),
        "updated": parse_jira_datetime(worklog.get("updated")),
        "raw": worklog,
    }
