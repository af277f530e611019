"""JSON shapes of Jira Cloud REST v3 objects (issues, users, projects, worklogs, comments, fields).

Shapes follow the official OpenAPI spec (tests validate them) and what Jira Cloud sends in
practice: timestamps as ``2024-03-01T10:15:30.123+0000`` rendered in the *searching user's*
time zone, ``self`` links under the gateway form ``{api}/ex/jira/{cloudId}/rest/api/3/...`` (as
Jira does under OAuth 2.0 3LO; here ``{api}`` is the simulator's own URL), absent keys rather
than nulls where Jira omits them (``emailAddress`` hidden by privacy settings, ``parent`` of a
top-level issue, ``comment`` of a worklog without one).

Issue and worklog bodies are cached as encoded JSON per record version, so repeated full fetches
of a large site cost little more than copying bytes.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from . import adf
from .model import (
    DAY_MS,
    ISSUE_TYPES,
    PRIORITIES,
    RESOLUTIONS,
    SELECT_OPTIONS,
    STATUS_CATEGORIES,
    STATUSES,
    TAGS,
    Comment,
    Issue,
    Project,
    SiteData,
    User,
    Worklog,
    time_spent_text,
)

ISSUE_EXPAND = "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations"
PROJECT_EXPAND = "description,lead,issueTypes,url,projectKeys,permissions,insight"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON (one shared encoder: `json.dumps` with options builds one per call)."""
    return _ENCODER.encode(obj).encode("utf-8")


def _sys(
    fid: str,
    name: str,
    nav: bool,
    order: bool,
    search: bool,
    stype: str | None,
    items: str | None = None,
    clauses: Sequence[str] | None = None,
) -> dict[str, Any]:
    f: dict[str, Any] = {
        "id": fid,
        "key": fid,
        "name": name,
        "custom": False,
        "orderable": order,
        "navigable": nav,
        "searchable": search,
        "clauseNames": list(clauses if clauses is not None else [fid]),
    }
    if stype is not None:
        schema: dict[str, Any] = {"type": stype, "system": fid}
        if items:
            schema["items"] = items
        f["schema"] = schema
    return f


def _custom(
    num: int, name: str, stype: str, custom: str, items: str | None = None, searcher: bool = True
) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": stype,
        "custom": f"com.atlassian.jira.plugin.system.customfieldtypes:{custom}"
        if ":" not in custom
        else custom,
        "customId": num,
    }
    if items:
        schema["items"] = items
    return {
        "id": f"customfield_{num}",
        "key": f"customfield_{num}",
        "name": name,
        "custom": True,
        "orderable": True,
        "navigable": True,
        "searchable": searcher,
        "clauseNames": [f"cf[{num}]", name],
        "schema": schema,
    }


#: the site's field catalogue in `GET /field` order; `navigable` drives ``*navigable``
FIELDS: list[dict[str, Any]] = [
    _sys("statuscategorychangedate", "Status Category Changed", True, False, True, "datetime"),
    _sys("issuetype", "Issue Type", True, True, True, "issuetype", clauses=["issuetype", "type"]),
    _sys("parent", "Parent", True, False, True, None),
    _sys("timespent", "Time Spent", True, False, False, "number"),
    _sys("project", "Project", True, False, True, "project"),
    _sys("fixVersions", "Fix versions", True, True, True, "array", "version"),
    _sys("aggregatetimespent", "Σ Time Spent", True, False, False, "number"),
    _sys("resolution", "Resolution", True, True, True, "resolution"),
    _sys("resolutiondate", "Resolved", True, False, True, "datetime", clauses=["resolutiondate", "resolved"]),
    _sys("workratio", "Work Ratio", True, False, True, "number"),
    _sys("lastViewed", "Last Viewed", True, False, False, "datetime"),
    _sys("watches", "Watchers", True, False, False, "watches"),
    _sys("created", "Created", True, False, True, "datetime", clauses=["created", "createdDate"]),
    _sys("priority", "Priority", True, True, True, "priority"),
    _sys("labels", "Labels", True, True, True, "array", "string"),
    _sys("timeestimate", "Remaining Estimate", True, False, False, "number"),
    _sys("aggregatetimeoriginalestimate", "Σ Original Estimate", True, False, False, "number"),
    _sys("issuelinks", "Linked Issues", True, True, False, "array", "issuelinks"),
    _sys("assignee", "Assignee", True, True, True, "user"),
    _sys("updated", "Updated", True, False, True, "datetime", clauses=["updated", "updatedDate"]),
    _sys("status", "Status", True, False, True, "status"),
    _sys("components", "Components", True, True, True, "array", "component"),
    _sys("timeoriginalestimate", "Original estimate", True, False, False, "number"),
    _sys("description", "Description", True, True, True, "string"),
    _sys("security", "Security Level", True, True, True, "securitylevel", clauses=["level"]),
    _sys("aggregatetimeestimate", "Σ Remaining Estimate", True, False, False, "number"),
    _sys("summary", "Summary", True, True, True, "string"),
    _sys("creator", "Creator", True, False, True, "user"),
    _sys("subtasks", "Sub-tasks", True, False, False, "array", "issuelinks"),
    _sys("reporter", "Reporter", True, True, True, "user"),
    _sys("aggregateprogress", "Σ Progress", True, False, False, "progress"),
    _sys("environment", "Environment", True, True, True, "string"),
    _sys("duedate", "Due date", True, True, True, "date", clauses=["due", "duedate"]),
    _sys("progress", "Progress", True, False, False, "progress"),
    _sys("votes", "Votes", True, False, False, "votes"),
    _custom(10016, "Story point estimate", "number", "float"),
    _custom(10019, "Rank", "any", "com.pyxis.greenhopper.jira:gh-lexo-rank"),
    _custom(10050, "Customer reference", "string", "textfield"),
    _custom(10051, "Acceptance criteria", "string", "textarea"),
    _custom(10052, "Severity", "option", "select"),
    _custom(10053, "Reviewers", "array", "multiuserpicker", items="user"),
    _custom(10054, "Target date", "date", "datepicker"),
    _custom(10055, "Deployed at", "datetime", "datetime"),
    _custom(10056, "Release tags", "array", "labels", items="string"),
    _sys("comment", "Comment", False, True, True, "comments-page"),
    _sys("worklog", "Log Work", False, True, True, "array", "worklog"),
    _sys("timetracking", "Time tracking", False, True, False, "timetracking"),
]
FIELD_IDS: tuple[str, ...] = tuple(f["id"] for f in FIELDS)
NAVIGABLE: tuple[str, ...] = tuple(f["id"] for f in FIELDS if f["navigable"])
FIELD_NAMES: dict[str, str] = {f["id"]: f["name"] for f in FIELDS}
FIELD_SCHEMAS: dict[str, dict[str, Any]] = {f["id"]: f["schema"] for f in FIELDS if "schema" in f}
_FIELD_BY_LOWER = {f["id"].lower(): f["id"] for f in FIELDS}
_FIELD_BY_NAME = {f["name"].lower(): f["id"] for f in FIELDS}
_FIELD_PREFIX = {fid: b'"' + fid.encode() + b'":' for fid in FIELD_IDS}

ID_ONLY = ("__id__",)
ID_KEY = ("__id__", "__key__")


def select_fields(spec: Iterable[str] | None, default: str) -> tuple[str, ...]:
    """Resolve a Jira ``fields`` list (``*all``, ``*navigable``, ids, ``-excluded``) to field ids.

    Returns `ID_ONLY` / `ID_KEY` when nothing but ``id``/``key`` is asked: search answers those
    with bare issue stubs and its large (5000) page size. Unknown fields are ignored, as in Jira.
    """
    items: list[str] = []
    for part in spec or ():
        items.extend(x.strip() for x in str(part).split(",") if x.strip())
    if not items:
        items = [default]
    include: list[str] = []
    exclude: set[str] = set()
    want_key = False
    only_minus = True
    for item in items:
        low = item.lower()
        if item.startswith("-"):
            fid = _FIELD_BY_LOWER.get(low[1:]) or _FIELD_BY_NAME.get(low[1:])
            if fid:
                exclude.add(fid)
            continue
        only_minus = False
        if low == "*all":
            include.extend(FIELD_IDS)
        elif low == "*navigable":
            include.extend(NAVIGABLE)
        elif low == "id":
            continue
        elif low == "key":
            want_key = True
        else:
            fid = _FIELD_BY_LOWER.get(low) or _FIELD_BY_NAME.get(low)
            if fid:
                include.append(fid)
    if only_minus:
        include = list(NAVIGABLE)
    seen: set[str] = set()
    out = []
    for fid in include:
        if fid not in exclude and fid not in seen:
            seen.add(fid)
            out.append(fid)
    if not out:
        return ID_KEY if want_key else ID_ONLY
    return tuple(out)


class Renderer:
    """Builds Jira JSON for one site; holds the body caches."""

    def __init__(self, data: SiteData, api_base: str, tz: str) -> None:
        self.data = data
        self.site = data.site
        self.api = f"{api_base}/ex/jira/{data.site.cloud_id}/rest/api/3"
        self.set_timezone(tz)
        self._table = self._field_table()

    def set_timezone(self, tz: str) -> None:
        self.tz_name = tz
        self.tz = ZoneInfo(tz)
        self._utc = tz in ("UTC", "Etc/UTC", "GMT")
        self._offsets: dict[int, int] = {}
        self._days: dict[tuple[int, int], tuple[str, str]] = {}
        self._user_cache: dict[tuple[str, int], dict[str, Any]] = {}
        self._epoch: tuple[int, str, str] | None = None
        self._frag: dict[Any, bytes] = {}
        self._epoch_check()

    def _epoch_check(self) -> None:
        """Drop shared fragments when users/projects/time zone changed (`render_epoch`)."""
        epoch = (self.data.render_epoch, self.tz_name, self.api)
        if epoch != self._epoch:
            self._epoch = epoch
            self._frag.clear()
            self._user_cache.clear()

    def _frag_get(self, key: Any, make: Any) -> bytes:
        hit = self._frag.get(key)
        if hit is None:
            hit = self._frag[key] = dumps(make())
        return hit

    # ---------------------------------------------------------------- scalars
    def ts(self, ms: int | None) -> str | None:
        """Jira's timestamp format, with the offset of the user's zone at that instant."""
        if ms is None:
            return None
        secs, milli = divmod(ms, 1000)
        if self._utc:
            off = 0
        else:
            # zone offsets only change on (quarter-)hour boundaries: memoise per quarter hour
            q = secs // 900
            off = self._offsets.get(q)
            if off is None:
                delta = datetime.fromtimestamp(secs, self.tz).utcoffset()
                off = self._offsets[q] = int(delta.total_seconds()) if delta else 0
        day, rem = divmod(secs + off, 86400)
        prefix = self._days.get((day, off))
        if prefix is None:
            t = time.gmtime(day * 86400)
            oh, om = divmod(abs(off) // 60, 60)
            prefix = self._days[(day, off)] = (
                f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T",
                f"{'-' if off < 0 else '+'}{oh:02d}{om:02d}",
            )
        h, rem = divmod(rem, 3600)
        m, s = divmod(rem, 60)
        return f"{prefix[0]}{h:02d}:{m:02d}:{s:02d}.{milli:03d}{prefix[1]}"

    def date(self, ms: int) -> str:
        return datetime.fromtimestamp(ms // 1000, self.tz).strftime("%Y-%m-%d")

    # ---------------------------------------------------------------- users
    def avatar_urls(self, u: User) -> dict[str, str]:
        sep = "&" if "?" in u.avatar else "?"
        return {f"{n}x{n}": f"{u.avatar}{sep}size={n}&s={n}" for n in (48, 24, 16, 32)}

    def user_details(self, account_id: str | None) -> dict[str, Any] | None:
        """A user as embedded in issues, comments and worklogs (`UserDetails`)."""
        if account_id is None:
            return None
        ck = (account_id, self.data.render_epoch)
        hit = self._user_cache.get(ck)
        if hit is not None:
            return hit
        u = self.data.users_by_id[account_id]
        d: dict[str, Any] = {"self": f"{self.api}/user?accountId={u.account_id}", "accountId": u.account_id}
        if u.email is not None:
            d["emailAddress"] = u.email
        d["avatarUrls"] = self.avatar_urls(u)
        d["displayName"] = u.display_name
        d["active"] = u.active
        if u.time_zone is not None:
            d["timeZone"] = u.time_zone
        d["accountType"] = u.account_type
        self._user_cache[ck] = d
        return d

    def user_full(self, u: User) -> dict[str, Any]:
        """A user as `users/search` and project leads show it (`User`)."""
        d: dict[str, Any] = {
            "self": f"{self.api}/user?accountId={u.account_id}",
            "accountId": u.account_id,
            "accountType": u.account_type,
        }
        if u.email is not None:
            d["emailAddress"] = u.email
        d["avatarUrls"] = self.avatar_urls(u)
        d["displayName"] = u.display_name
        d["active"] = u.active
        if u.time_zone is not None:
            d["timeZone"] = u.time_zone
        d["locale"] = u.locale
        return d

    def myself(self, u: User) -> dict[str, Any]:
        d = self.user_full(u)
        d["timeZone"] = self.tz_name
        d["groups"] = {"size": 3, "items": []}
        d["applicationRoles"] = {"size": 1, "items": []}
        d["expand"] = "groups,applicationRoles"
        return d

    # ---------------------------------------------------------------- projects
    def project_avatars(self, p: Project) -> dict[str, str]:
        sizes = {"48x48": "large", "24x24": "small", "16x16": "xsmall", "32x32": "medium"}
        return {
            k: f"{self.api}/universal_avatar/view/type/project/avatar/{10400 + p.id % 20}?size={v}"
            for k, v in sizes.items()
        }

    def project_compact(self, p: Project) -> dict[str, Any]:
        d: dict[str, Any] = {
            "self": f"{self.api}/project/{p.id}",
            "id": str(p.id),
            "key": p.key,
            "name": p.name,
            "projectTypeKey": p.type_key,
            "simplified": p.style == "next-gen",
            "avatarUrls": self.project_avatars(p),
        }
        if p.category:
            d["projectCategory"] = self.category(p)
        return d

    def category(self, p: Project) -> dict[str, Any]:
        cid, name, desc = p.category or ("", "", "")
        return {"self": f"{self.api}/projectCategory/{cid}", "id": cid, "name": name, "description": desc}

    def project(self, p: Project, expand: set[str]) -> dict[str, Any]:
        d: dict[str, Any] = {
            "expand": PROJECT_EXPAND,
            "self": f"{self.api}/project/{p.id}",
            "id": str(p.id),
            "key": p.key,
        }
        if "description" in expand:
            d["description"] = p.description
        if "lead" in expand:
            d["lead"] = self.user_full(self.data.users_by_id[p.lead])
        d["name"] = p.name
        d["avatarUrls"] = self.project_avatars(p)
        if p.category:
            d["projectCategory"] = self.category(p)
        d["projectTypeKey"] = p.type_key
        d["simplified"] = p.style == "next-gen"
        d["style"] = p.style
        d["isPrivate"] = p.private
        d["properties"] = {}
        d["uuid"] = p.uuid
        if "issuetypes" in expand:
            d["issueTypes"] = [self.issuetype(n, compact=False) for n in ISSUE_TYPES]
        if "insight" in expand:
            issues = [i for i in self.data.issues.values() if i.project_id == p.id]
            d["insight"] = {
                "totalIssueCount": len(issues),
                "lastIssueUpdateTime": self.ts(max((i.updated for i in issues), default=None)) or self.ts(0),
            }
        if p.archived:
            d["archived"] = True
            d["archivedDate"] = self.ts(p.archived_ms)
            if p.archived_by:
                d["archivedBy"] = self.user_full(self.data.users_by_id[p.archived_by])
        return d

    # ---------------------------------------------------------------- issue pieces
    def issuetype(self, name: str, compact: bool = True) -> dict[str, Any]:
        t = ISSUE_TYPES[name]
        return {
            "self": f"{self.api}/issuetype/{t['id']}",
            "id": t["id"],
            "description": t["description"],
            "iconUrl": f"{self.api}/universal_avatar/view/type/issuetype/avatar/{t['avatarId']}?size=medium",
            "name": name,
            "subtask": t["subtask"],
            "avatarId": t["avatarId"],
            "hierarchyLevel": t["hierarchyLevel"],
        }

    def status(self, name: str) -> dict[str, Any]:
        sid, cat = STATUSES[name]
        c = STATUS_CATEGORIES[cat]
        return {
            "self": f"{self.api}/status/{sid}",
            "description": "",
            "iconUrl": f"{self.site.url}/",
            "name": name,
            "id": sid,
            "statusCategory": {
                "self": f"{self.api}/statuscategory/{c['id']}",
                "id": c["id"],
                "key": c["key"],
                "colorName": c["colorName"],
                "name": c["name"],
            },
        }

    def priority(self, name: str | None) -> dict[str, Any] | None:
        if name is None:
            return None
        pid = PRIORITIES[name]
        return {
            "self": f"{self.api}/priority/{pid}",
            "iconUrl": f"{self.site.url}/images/icons/priorities/{name.lower()}.svg",
            "name": name,
            "id": pid,
        }

    def issue_ref(self, issue: Issue) -> dict[str, Any]:
        """How a parent or a subtask is embedded in another issue."""
        return {
            "id": str(issue.id),
            "key": issue.key,
            "self": f"{self.api}/issue/{issue.id}",
            "fields": {
                "summary": issue.summary,
                "status": self.status(issue.status),
                "priority": self.priority(issue.priority),
                "issuetype": self.issuetype(issue.itype),
            },
        }

    def custom_values(self, issue: Issue) -> dict[str, Any]:
        rng = random.Random(issue.fseed)
        d = self.data
        out: dict[str, Any] = {}
        out["customfield_10016"] = rng.choice((None, None, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 0.5))
        out["customfield_10019"] = f"0|i{issue.id:05x}:"
        r = rng.random()
        out["customfield_10050"] = (
            None
            if r < 0.5
            else f"CR-{rng.randint(1000, 99999)}"
            if r < 0.85
            else rng.choice(adf.UNICODE_SNIPPETS)
        )
        out["customfield_10051"] = None if rng.random() < 0.6 else d.pool.doc(rng.getrandbits(48), "short")
        if rng.random() < 0.4:
            out["customfield_10052"] = None
        else:
            oid, value = rng.choice(SELECT_OPTIONS)
            out["customfield_10052"] = {
                "self": f"{self.api}/customFieldOption/{oid}",
                "value": value,
                "id": oid,
            }
        if rng.random() < 0.6:
            out["customfield_10053"] = None
        else:
            picks = rng.sample(d.staff, min(len(d.staff), rng.randint(1, 3)))
            out["customfield_10053"] = [self.user_details(u.account_id) for u in picks]
        out["customfield_10054"] = (
            None if rng.random() < 0.6 else self.date(issue.created + rng.randint(1, 90) * DAY_MS)
        )
        out["customfield_10055"] = (
            None if rng.random() < 0.7 else self.ts(issue.created + rng.randint(0, 30 * DAY_MS))
        )
        out["customfield_10056"] = None if rng.random() < 0.6 else sorted(rng.sample(TAGS, rng.randint(1, 3)))
        return out

    def worklog_bytes(self, wl: Worklog) -> bytes:
        """A `Worklog`, assembled from encoded parts (60k of them must render in about a second)."""
        self._epoch_check()
        hit = wl.cache.get(self._epoch)
        if hit is not None:
            return hit
        wl.cache.clear()
        parts = [
            b'{"self":"%s/issue/%d/worklog/%d","author":' % (self.api.encode(), wl.issue_id, wl.id),
            self.user_bytes(wl.author),
            b',"updateAuthor":',
            self.user_bytes(wl.update_author),
        ]
        if wl.comment_seed is not None:
            parts += [b',"comment":', self.data.pool.doc_bytes(wl.comment_seed, "short")]
        parts.append(f',"created":"{self.ts(wl.created)}","updated":"{self.ts(wl.updated)}"'.encode())
        if wl.visibility is not None:
            parts += [b',"visibility":', dumps(wl.visibility)]
        parts.append(
            f',"started":"{self.ts(wl.started)}","timeSpent":"{time_spent_text(wl.seconds)}",'
            f'"timeSpentSeconds":{wl.seconds},"id":"{wl.id}","issueId":"{wl.issue_id}"}}'.encode()
        )
        body = wl.cache[self._epoch] = b"".join(parts)
        return body

    def worklog(self, wl: Worklog) -> dict[str, Any]:
        return json.loads(self.worklog_bytes(wl))

    def comment_bytes(self, cm: Comment) -> bytes:
        key = ("c", cm.id, cm.updated)
        hit = self._frag.get(key)
        if hit is not None:
            return hit
        parts = [
            b'{"self":"%s/issue/%d/comment/%d","id":"%d","author":'
            % (self.api.encode(), cm.issue_id, cm.id, cm.id),
            self.user_bytes(cm.author),
            b',"body":',
            self.data.pool.doc_bytes(cm.body_seed, "comment"),
            b',"updateAuthor":',
            self.user_bytes(cm.update_author),
            f',"created":"{self.ts(cm.created)}","updated":"{self.ts(cm.updated)}"'.encode(),
        ]
        if cm.visibility is not None:
            parts += [b',"visibility":', dumps(cm.visibility)]
        if cm.jsd_public is not None:
            parts.append(b',"jsdPublic":true' if cm.jsd_public else b',"jsdPublic":false')
        parts.append(b"}")
        body = self._frag[key] = b"".join(parts)
        return body

    def comment(self, cm: Comment) -> dict[str, Any]:
        return json.loads(self.comment_bytes(cm))

    # ---------------------------------------------------------------- issues
    # Issue bodies are assembled from encoded fragments: users, statuses, types, projects,
    # worklogs and comments are each serialised once and then only copied.

    def user_bytes(self, account_id: str | None) -> bytes:
        if account_id is None:
            return b"null"
        return self._frag_get(("u", account_id), lambda: self.user_details(account_id))

    def _worklogs(self, issue: Issue, st: dict[str, Any]) -> list[Worklog]:
        if "wl" not in st:
            wls = self.data.worklogs
            st["wl"] = [wls[w] for w in issue.worklogs if w in wls]
            st["spent"] = sum(w.seconds for w in st["wl"]) or None
        return st["wl"]

    def _ts_bytes(self, ms: int | None) -> bytes:
        return b"null" if ms is None else b'"' + self.ts(ms).encode() + b'"'

    def _resolution(self, issue: Issue) -> bytes:
        if issue.resolutiondate is None:
            return b"null"
        name = "Won't Do" if issue.status == "Won't Do" else "Done"
        rid = RESOLUTIONS[name]
        return self._frag_get(
            ("r", name),
            lambda: {
                "self": f"{self.api}/resolution/{rid}",
                "id": rid,
                "name": name,
                "description": "Work has been completed on this issue."
                if name == "Done"
                else "This issue won't be actioned.",
            },
        )

    def _spent(self, issue: Issue, st: dict[str, Any]) -> int | None:
        self._worklogs(issue, st)
        return st["spent"]

    def _progress(self, issue: Issue, st: dict[str, Any]) -> bytes:
        spent = self._spent(issue, st) or 0
        if spent:
            return b'{"progress":%d,"total":%d,"percent":100}' % (spent, spent)
        return b'{"progress":0,"total":0}'

    def _timetracking(self, issue: Issue, st: dict[str, Any]) -> bytes:
        spent = self._spent(issue, st)
        return b"{}" if not spent else dumps({"timeSpent": time_spent_text(spent), "timeSpentSeconds": spent})

    def _parent(self, issue: Issue) -> bytes | None:
        d = self.data
        if issue.parent_id is None or issue.parent_id not in d.issues:
            return None  # Jira omits the key for top-level issues
        return dumps(self.issue_ref(d.issues[issue.parent_id]))

    def _subtasks(self, issue: Issue) -> bytes:
        d = self.data
        if not issue.children:
            return b"[]"
        return dumps(
            [
                self.issue_ref(d.issues[c])
                for c in issue.children
                if c in d.issues and d.issues[c].itype == "Subtask"
            ]
        )

    def _custom(self, fid: str, issue: Issue, st: dict[str, Any]) -> bytes:
        if "custom" not in st:
            st["custom"] = self.custom_values(issue)
        return dumps(st["custom"].get(fid))

    def _comments(self, issue: Issue) -> bytes:
        d = self.data
        cms = [d.comments[c] for c in issue.comments if c in d.comments]
        return (
            b'{"comments":['
            + b",".join(self.comment_bytes(cm) for cm in cms)
            + b'],"self":"%s/issue/%d/comment","maxResults":%d,"total":%d,"startAt":0}'
            % (self.api.encode(), issue.id, len(cms), len(cms))
        )

    def _worklog_field(self, issue: Issue, st: dict[str, Any]) -> bytes:
        wls = self._worklogs(issue, st)
        return (
            b'{"startAt":0,"maxResults":20,"total":%d,"worklogs":[' % len(wls)
            + b",".join(self.worklog_bytes(w) for w in wls[:20])
            + b"]}"
        )

    def _field_table(self) -> dict[str, Any]:
        """field id -> f(issue, state) -> encoded value, or None when Jira omits the key."""
        d = self.data
        null = b"null"
        api = self.api
        t: dict[str, Any] = {
            "statuscategorychangedate": lambda i, st: self._ts_bytes(i.status_changed),
            "issuetype": lambda i, st: self._frag_get(("t", i.itype), lambda: self.issuetype(i.itype)),
            "parent": lambda i, st: self._parent(i),
            "timespent": lambda i, st: dumps(self._spent(i, st)),
            "aggregatetimespent": lambda i, st: dumps(self._spent(i, st)),
            "project": lambda i, st: self._frag_get(
                ("pr", i.project_id), lambda: self.project_compact(d.projects_by_id[i.project_id])
            ),
            "fixVersions": lambda i, st: b"[]",
            "issuelinks": lambda i, st: b"[]",
            "components": lambda i, st: b"[]",
            "resolution": lambda i, st: self._resolution(i),
            "resolutiondate": lambda i, st: self._ts_bytes(i.resolutiondate),
            "workratio": lambda i, st: b"-1",
            "watches": lambda i, st: (
                b'{"self":"%s/issue/%s/watchers","watchCount":%d,"isWatching":false}'
                % (api.encode(), i.key.encode(), 1 + i.id % 3)
            ),
            "created": lambda i, st: self._ts_bytes(i.created),
            "priority": lambda i, st: self._frag_get(("p", i.priority), lambda: self.priority(i.priority)),
            "labels": lambda i, st: dumps(i.labels),
            "assignee": lambda i, st: self.user_bytes(i.assignee),
            "updated": lambda i, st: self._ts_bytes(i.updated),
            "status": lambda i, st: self._frag_get(("s", i.status), lambda: self.status(i.status)),
            "description": lambda i, st: d.description_bytes(i),
            "summary": lambda i, st: dumps(i.summary),
            "creator": lambda i, st: self.user_bytes(i.reporter),
            "reporter": lambda i, st: self.user_bytes(i.reporter),
            "subtasks": lambda i, st: self._subtasks(i),
            "progress": self._progress,
            "aggregateprogress": self._progress,
            "duedate": lambda i, st: dumps(i.duedate),
            "votes": lambda i, st: (
                b'{"self":"%s/issue/%s/votes","votes":0,"hasVoted":false}' % (api.encode(), i.key.encode())
            ),
            "comment": lambda i, st: self._comments(i),
            "worklog": self._worklog_field,
            "timetracking": self._timetracking,
        }
        for fid in FIELD_IDS:
            if fid.startswith("customfield_"):
                t[fid] = lambda i, st, fid=fid: self._custom(fid, i, st)
            else:
                # lastViewed, security, environment and the estimates: empty on this site
                t.setdefault(fid, lambda i, st: null)
        return t

    def issue_bytes(
        self, issue: Issue, fields: tuple[str, ...], expand: frozenset[str] = frozenset()
    ) -> bytes:
        """The encoded issue with the `fields` asked; cached per issue version and field set."""
        if fields == ID_ONLY:
            return b'{"id":"%d"}' % issue.id
        if fields == ID_KEY:
            return dumps({"id": str(issue.id), "key": issue.key})
        self._epoch_check()
        cache = issue.cache
        if cache.get("_v") != self._epoch:
            cache.clear()
            cache["_v"] = self._epoch
        ck = (fields, expand)
        hit = cache.get(ck)
        if hit is not None:
            return hit
        table = self._table
        st: dict[str, Any] = {}
        parts = []
        for fid in fields:
            b = table[fid](issue, st)
            if b is not None:
                if parts:
                    parts.append(b",")
                parts.append(_FIELD_PREFIX[fid])
                parts.append(b)
        if expand:
            head: dict[str, Any] = {
                "expand": ISSUE_EXPAND,
                "id": str(issue.id),
                "self": f"{self.api}/issue/{issue.id}",
                "key": issue.key,
            }
            if "names" in expand:
                head["names"] = {f: FIELD_NAMES[f] for f in fields}
            if "schema" in expand:
                head["schema"] = {f: FIELD_SCHEMAS[f] for f in fields if f in FIELD_SCHEMAS}
            if "changelog" in expand:
                head["changelog"] = {"startAt": 0, "maxResults": 0, "total": 0, "histories": []}
            first = dumps(head)[:-1]
        else:
            first = b'{"expand":"%s","id":"%d","self":"%s/issue/%d","key":%s' % (
                ISSUE_EXPAND.encode(),
                issue.id,
                self.api.encode(),
                issue.id,
                dumps(issue.key),
            )
        body = b"".join([first, b',"fields":{', *parts, b"}}"])
        if len(cache) > 6:
            cache.clear()
            cache["_v"] = self._epoch
        cache[ck] = body
        return body

    def issue_dict(
        self, issue: Issue, fields: tuple[str, ...], expand: frozenset[str] = frozenset()
    ) -> dict[str, Any]:
        return json.loads(self.issue_bytes(issue, fields, expand))
