"""In-memory Jira data of one simulated site: generation from a seed and mutations.

Records are light `__slots__` objects holding integers (epoch milliseconds, ids) and small
strings; anything big (ADF documents, custom-field values) is derived lazily from a per-record
seed, so 20k issues and 60k worklogs are generated in about a second. Issue, worklog and comment
ids grow with creation time as in Jira.

All times are epoch milliseconds on the simulator clock (`Clock`), which runs with real time plus
an offset moved by `advance()`. Generated history ends ten minutes before the start so that the
worklog feed's "nothing from the last minute" rule does not hide any of the initial data.
"""

from __future__ import annotations

import bisect
import json
import random
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from . import adf
from .config import SimConfig, Site

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MINUTE_MS = 60_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Clock:
    """Simulator time: real time plus an offset that only moves forward."""

    def __init__(self) -> None:
        self._offset_ms = 0
        self._lock = threading.Lock()

    def now_ms(self) -> int:
        return int(time.time() * 1000) + self._offset_ms

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the simulator clock only moves forward")
        with self._lock:
            self._offset_ms += int(seconds * 1000)


def ms_to_datetime(ms: int) -> datetime:
    """Exact (no float rounding) aware UTC datetime of an epoch-millisecond value."""
    return _EPOCH + timedelta(milliseconds=ms)


# --------------------------------------------------------------------------------------------
# static catalogues (ids as in a fresh Jira Cloud site)

ISSUE_TYPES: dict[str, dict[str, Any]] = {
    "Epic": {
        "id": "10000",
        "hierarchyLevel": 1,
        "subtask": False,
        "avatarId": 10307,
        "description": "A big user story that needs to be broken down.",
    },
    "Story": {
        "id": "10001",
        "hierarchyLevel": 0,
        "subtask": False,
        "avatarId": 10315,
        "description": "Functionality or a feature expressed as a user goal.",
    },
    "Task": {
        "id": "10002",
        "hierarchyLevel": 0,
        "subtask": False,
        "avatarId": 10318,
        "description": "A small, distinct piece of work.",
    },
    "Bug": {
        "id": "10003",
        "hierarchyLevel": 0,
        "subtask": False,
        "avatarId": 10303,
        "description": "A problem or error.",
    },
    "Subtask": {
        "id": "10004",
        "hierarchyLevel": -1,
        "subtask": True,
        "avatarId": 10316,
        "description": "A small piece of work that's part of a larger task.",
    },
}
STANDARD_TYPES = ("Story", "Task", "Bug")

STATUS_CATEGORIES: dict[str, dict[str, Any]] = {
    "new": {"id": 2, "key": "new", "colorName": "blue-gray", "name": "To Do"},
    "indeterminate": {"id": 4, "key": "indeterminate", "colorName": "yellow", "name": "In Progress"},
    "done": {"id": 3, "key": "done", "colorName": "green", "name": "Done"},
}
# name -> (id, category key)
STATUSES: dict[str, tuple[str, str]] = {
    "To Do": ("10000", "new"),
    "In Progress": ("3", "indeterminate"),
    "In Review": ("10001", "indeterminate"),
    "Done": ("10002", "done"),
    "Won't Do": ("10003", "done"),
}
PRIORITIES: dict[str, str] = {"Highest": "1", "High": "2", "Medium": "3", "Low": "4", "Lowest": "5"}
RESOLUTIONS: dict[str, str] = {"Done": "10000", "Won't Do": "10001"}
LABELS = (
    "backend",
    "frontend",
    "tech-debt",
    "customer",
    "p1",
    "security",
    "perf",
    "ux",
    "migration",
    "data-sync",
    "日本語",
    "needs-triage",
)
SELECT_OPTIONS = (("10020", "Critical"), ("10021", "Major"), ("10022", "Minor"), ("10023", "Trivial"))
TAGS = ("alpha", "beta", "ga", "hotfix", "q3-okr", "ñandú")

FIRST = (
    "Mia",
    "Liam",
    "Noah",
    "Emma",
    "Olivia",
    "Ava",
    "Lucas",
    "Zoë",
    "José",
    "Chloé",
    "Sven",
    "Aarav",
    "Yuki",
    "Wei",
    "Fatima",
    "Omar",
    "Noa",
    "Dmitri",
    "Ines",
    "Kwame",
    "Priya",
    "Mateo",
)
LAST = (
    "Krystof",
    "Richards",
    "O'Brien",
    "Álvarez",
    "Müller",
    "Nakamura",
    "Zhang",
    "Haddad",
    "Cohen",
    "Ivanova",
    "Mensah",
    "Sharma",
    "García",
    "Smith",
    "Nguyen",
    "Kowalski",
)
UNICODE_NAMES = ("田中 太郎", "محمد علي", "דוד כהן", "Ólafur Ragnarsson", "Łukasz Żółć", "김 민준")
APP_USERS = (
    ("Automation for Jira", "557058:f58131cb-b67d-43c7-b30d-6b58d40bd077"),
    ("Jira Service Management Widget", "557058:cbc04d7b-be84-46eb-90e4-e567aa5332c6"),
    ("Slack", "5d53f3cbc6b9320d9ea5bdc2"),
)
TIME_ZONES = (
    "UTC",
    "Europe/Berlin",
    "America/Los_Angeles",
    "America/New_York",
    "Asia/Tokyo",
    "Australia/Sydney",
    "Asia/Kolkata",
    "America/Sao_Paulo",
    "Pacific/Auckland",
)
PROJECT_DEFS = (
    ("ENG", "Engineering Platform", "software", "classic"),
    ("OPS", "Operations", "software", "next-gen"),
    ("SUP", "Customer Support ☎", "service_desk", "classic"),
    ("MKT", "Marketing — Campaigns", "business", "next-gen"),
    ("DATA", "Data & Analytics", "software", "classic"),
    ("WEB", "Website", "software", "next-gen"),
    ("MOB", "Mobile Apps", "software", "classic"),
    ("SEC", "Security", "software", "classic"),
    ("FIN", "Finance", "business", "classic"),
    ("HR", "People Team", "business", "next-gen"),
)
SITE_NAMES = ("acme-sim", "globex-sim", "initech-sim", "umbrella-sim", "hooli-sim", "stark-sim")


class User:
    __slots__ = (
        "account_id",
        "account_type",
        "active",
        "avatar",
        "display_name",
        "email",
        "locale",
        "time_zone",
    )

    def __init__(
        self,
        account_id: str,
        account_type: str,
        display_name: str,
        email: str | None,
        active: bool,
        time_zone: str | None,
        locale: str,
        avatar: str,
    ) -> None:
        self.account_id = account_id
        self.account_type = account_type
        self.display_name = display_name
        self.email = email
        self.active = active
        self.time_zone = time_zone
        self.locale = locale
        self.avatar = avatar


class Project:
    __slots__ = (
        "archived_by",
        "archived_ms",
        "category",
        "description",
        "id",
        "key",
        "lead",
        "name",
        "private",
        "rank",
        "style",
        "type_key",
        "uuid",
    )

    def __init__(
        self,
        pid: int,
        key: str,
        name: str,
        type_key: str,
        style: str,
        lead: str,
        description: str,
        category: tuple[str, str, str] | None,
        private: bool,
        puuid: str,
    ) -> None:
        self.id = pid
        self.key = key
        self.name = name
        self.type_key = type_key
        self.style = style
        self.lead = lead
        self.description = description
        self.category = category
        self.private = private
        self.uuid = puuid
        self.archived_ms: int | None = None
        self.archived_by: str | None = None
        self.rank = 0

    @property
    def archived(self) -> bool:
        return self.archived_ms is not None


class Issue:
    __slots__ = (
        "assignee",
        "cache",
        "children",
        "comments",
        "created",
        "desc",
        "desc_seed",
        "duedate",
        "fseed",
        "id",
        "itype",
        "key",
        "labels",
        "num",
        "old_keys",
        "parent_id",
        "priority",
        "project_id",
        "reporter",
        "resolutiondate",
        "status",
        "status_changed",
        "summary",
        "updated",
        "version",
        "worklogs",
    )

    def __init__(self) -> None:
        self.children: list[int] = []
        self.comments: list[int] = []
        self.worklogs: list[int] = []
        self.old_keys: list[str] = []
        self.cache: dict[Any, Any] = {}
        self.desc: Any = None
        self.version = 0


class Worklog:
    __slots__ = (
        "author",
        "cache",
        "comment_seed",
        "created",
        "id",
        "issue_id",
        "seconds",
        "started",
        "update_author",
        "updated",
        "visibility",
    )

    def __init__(self) -> None:
        self.cache: dict[Any, Any] = {}


class Comment:
    __slots__ = (
        "author",
        "body_seed",
        "created",
        "id",
        "issue_id",
        "jsd_public",
        "update_author",
        "updated",
        "visibility",
    )


_UNSET = object()


def time_spent_text(seconds: int) -> str:
    """Jira's rendering of a duration with 8 h days and 5 d weeks, e.g. ``"1w 2d 3h 20m"``."""
    minutes = seconds // 60
    weeks, minutes = divmod(minutes, 5 * 8 * 60)
    days, minutes = divmod(minutes, 8 * 60)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{v}{u}" for v, u in ((weeks, "w"), (days, "d"), (hours, "h"), (minutes, "m")) if v]
    return " ".join(parts) or "0m"


class SiteData:
    """Everything one site holds, plus indexes the endpoints need (keys, worklog feeds)."""

    def __init__(self, site: Site, cfg: SimConfig, index: int, now_ms: int) -> None:
        self.site = site
        self.cfg = cfg
        self.index = index
        self.users: list[User] = []
        self.users_by_id: dict[str, User] = {}
        self.projects: list[Project] = []
        self.projects_by_id: dict[int, Project] = {}
        self.projects_by_key: dict[str, Project] = {}
        self.issues: dict[int, Issue] = {}
        self.key_index: dict[str, int] = {}
        self.worklogs: dict[int, Worklog] = {}
        self.comments: dict[int, Comment] = {}
        self.wl_updated: list[tuple[int, int]] = []
        self.wl_deleted: list[tuple[int, int]] = []
        self.deleted_issue_ids: set[int] = set()
        self.deleted_worklog_ids: set[int] = set()
        self.project_counters: dict[int, int] = {}
        self.next_issue_id = 10000
        self.next_worklog_id = 10000
        self.next_comment_id = 10000
        self.huge_issue_id: int | None = None
        #: bumped by every change that can alter search results
        self.data_version = 0
        #: bumped by changes that alter many rendered bodies (users, projects, time zone)
        self.render_epoch = 0
        self.mention_users: list[tuple[str, str]] = []
        self._generate(now_ms)

    # ---------------------------------------------------------------- generation
    def _generate(self, now_ms: int) -> None:
        cfg = self.cfg
        rng = random.Random(f"jira-sim:{cfg.seed}:{self.index}")
        end = now_ms - 10 * MINUTE_MS
        start = end - cfg.history_days * DAY_MS
        self._gen_users(rng)
        self._gen_projects(rng, end)
        self._gen_issues(rng, start, end)
        self._gen_worklogs(rng, end)
        self._gen_comments(rng, end)
        self.wl_updated = sorted((w.updated, w.id) for w in self.worklogs.values())

    def _avatar(self, initials: str, n: int) -> str:
        return (
            "https://avatar-management--avatars.us-west-2.prod.public.atl-paas.net/initials/"
            f"{initials}-{n % 6}.png"
        )

    def _gen_users(self, rng: random.Random) -> None:
        n = max(1, self.cfg.users)
        apps = 0 if n < 8 else min(len(APP_USERS), 1 + n // 30)
        customers = 0 if n < 8 else max(1, n // 15)
        for i in range(n):
            if i == 0:
                kind = "atlassian"
            elif i <= apps:
                kind = "app"
            elif i <= apps + customers:
                kind = "customer"
            else:
                kind = "atlassian"
            if kind == "app":
                name, account_id = APP_USERS[i - 1]
                if self.index:
                    account_id = f"{account_id[:-4]}{self.index:04d}"
                user = User(
                    account_id,
                    "app",
                    name,
                    None,
                    True,
                    None,
                    "en_US",
                    "https://secure.gravatar.com/avatar/600529a9c8bfef89daa848e6db28ed2d?d=mm&s=48",
                )
            else:
                if rng.random() < 0.08:
                    name = rng.choice(UNICODE_NAMES)
                else:
                    name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
                slug = "".join(ch for ch in name.lower() if ch.isascii() and ch.isalnum()) or f"user{i}"
                if kind == "customer":
                    account_id = f"qm:{_rand_uuid(rng)}:{_rand_uuid(rng)}"
                    email: str | None = f"{slug}{i}@customer.example.net"
                elif rng.random() < 0.5:
                    account_id = "".join(rng.choice("0123456789abcdef") for _ in range(24))
                    email = f"{slug}.{i}@example.com"
                else:
                    account_id = f"712020:{_rand_uuid(rng)}"
                    email = f"{slug}.{i}@example.com"
                active = True
                tz: str | None = rng.choice(TIME_ZONES)
                if i > 0:
                    if rng.random() < 0.18:
                        email = None  # hidden by the profile-visibility settings
                    if rng.random() < 0.12:
                        active = False
                    if rng.random() < 0.08:
                        tz = None
                else:
                    tz = self.cfg.user_timezone
                initials = "".join(p[:1] for p in name.split()[:2]).upper() or "U"
                user = User(
                    account_id,
                    kind,
                    name,
                    email,
                    active,
                    tz,
                    rng.choice(("en_US", "de_DE", "ja_JP")),
                    self._avatar(initials, i),
                )
            self.users.append(user)
            self.users_by_id[user.account_id] = user
        self.staff = [u for u in self.users if u.account_type == "atlassian"]
        self.customers = [u for u in self.users if u.account_type == "customer"]
        self.mention_users = [(u.account_id, u.display_name) for u in self.staff[:50]]
        self.pool = adf.AdfPool(f"{self.cfg.seed}:{self.index}", self.mention_users)

    def _gen_projects(self, rng: random.Random, end: int) -> None:
        n = max(1, self.cfg.projects)
        defs = list(PROJECT_DEFS)
        for i in range(len(defs), n):
            defs.append((f"P{i}", f"Project {i}", "software", "classic"))
        chosen = defs[:n]
        if n >= 2:
            # the last project is archived (renamed to look legacy) but keeps its issues
            chosen[-1] = ("LEG", "Legacy Platform (archived)", "software", "classic")
        for i, (key, name, type_key, style) in enumerate(chosen):
            lead = rng.choice(self.staff).account_id
            category = ("10000", "Delivery", "Teams that ship product") if i % 2 == 0 else None
            p = Project(
                10000 + i,
                key,
                name,
                type_key,
                style,
                lead,
                f"{name}: {adf.sentence(rng)}",
                category,
                rng.random() < 0.2,
                _rand_uuid(rng),
            )
            self.projects.append(p)
            self.projects_by_id[p.id] = p
            self.projects_by_key[p.key] = p
            self.project_counters[p.id] = 0
        if n >= 2:
            arch = self.projects[-1]
            arch.archived_ms = end - rng.randint(20, 90) * DAY_MS
            arch.archived_by = self.staff[0].account_id
        self._rank_projects()

    def _rank_projects(self) -> None:
        for rank, p in enumerate(sorted(self.projects, key=lambda p: p.key)):
            p.rank = rank

    def _issue_end(self, issue: Issue, end: int) -> int:
        p = self.projects_by_id[issue.project_id]
        return p.archived_ms if p.archived_ms is not None else end

    def _gen_issues(self, rng: random.Random, start: int, end: int) -> None:
        n = self.cfg.issues
        if n <= 0:
            return
        created = sorted(rng.randint(start, end - HOUR_MS) for _ in range(n))
        live = [p for p in self.projects if not p.archived]
        archived = [p for p in self.projects if p.archived]
        live_w = [1.0 / (k + 1) + 0.3 for k in range(len(live))]
        huge_at = rng.randrange(n)
        recent_std: dict[int, list[int]] = {p.id: [] for p in self.projects}
        epics: dict[int, list[int]] = {p.id: [] for p in self.projects}
        for i, c in enumerate(created):
            if archived and rng.random() < 0.07 and c < (archived[0].archived_ms or 0) - DAY_MS:
                project = rng.choice(archived)
            else:
                project = rng.choices(live, live_w)[0] if live else self.projects[0]
            limit = project.archived_ms if project.archived_ms is not None else end
            issue = Issue()
            issue.id = self._new_issue_id()
            issue.project_id = project.id
            issue.num = self._next_num(project.id)
            issue.key = f"{project.key}-{issue.num}"
            r = rng.random()
            parent_id = None
            if r < 0.05:
                itype = "Epic"
            elif r < 0.17 and recent_std[project.id]:
                itype = "Subtask"
                parent_id = rng.choice(recent_std[project.id][-200:])
            else:
                itype = rng.choice(STANDARD_TYPES)
                if epics[project.id] and rng.random() < 0.2:
                    parent_id = rng.choice(epics[project.id][-50:])
            issue.itype = itype
            issue.parent_id = parent_id
            issue.created = c
            age_days = (end - c) / DAY_MS
            if rng.random() < 0.15:
                issue.updated = c
            else:
                issue.updated = min(limit, c + int(rng.expovariate(1 / (20 * DAY_MS))) + 1)
            issue.updated = max(issue.updated, c)
            status = self._pick_status(rng, age_days)
            issue.status = status
            issue.status_changed = issue.updated
            issue.resolutiondate = None
            if STATUSES[status][1] == "done":
                issue.resolutiondate = c + int((issue.updated - c) * rng.random())
            issue.priority = None if rng.random() < 0.05 else rng.choice(tuple(PRIORITIES))
            issue.summary = adf.summary_text(rng)
            issue.labels = sorted(set(rng.sample(LABELS, rng.choice((0, 0, 1, 1, 2, 3)))))
            if project.type_key == "service_desk" and self.customers and rng.random() < 0.5:
                issue.reporter = rng.choice(self.customers).account_id
            else:
                issue.reporter = rng.choice(self.staff).account_id
            issue.assignee = None if rng.random() < 0.2 else rng.choice(self.staff).account_id
            issue.desc_seed = None if rng.random() < 0.12 else rng.getrandbits(48)
            issue.desc = _UNSET
            if i == huge_at:
                issue.desc_seed = -1 - rng.getrandbits(40)  # negative seed = the huge description
                self.huge_issue_id = issue.id
            issue.fseed = rng.getrandbits(48)
            issue.duedate = None
            if rng.random() < 0.2:
                issue.duedate = ms_to_datetime(c + rng.randint(1, 60) * DAY_MS).strftime("%Y-%m-%d")
            self._add_issue(issue)
            if itype in STANDARD_TYPES:
                recent_std[project.id].append(issue.id)
            elif itype == "Epic":
                epics[project.id].append(issue.id)

    @staticmethod
    def _pick_status(rng: random.Random, age_days: float) -> str:
        done_p = min(0.85, 0.15 + age_days / 400)
        r = rng.random()
        if r < done_p:
            return "Done" if rng.random() < 0.85 else "Won't Do"
        r = rng.random()
        if r < 0.5:
            return "To Do"
        return "In Progress" if r < 0.8 else "In Review"

    def _gen_worklogs(self, rng: random.Random, end: int) -> None:
        n = self.cfg.worklogs
        ids = list(self.issues)
        if n <= 0 or not ids:
            return
        hot = rng.sample(ids, max(1, len(ids) // 5))
        records: list[Worklog] = []
        durations = (900, 1800, 3600, 5400, 7200, 10800, 12000, 14400, 28800, 57600)
        for _ in range(n):
            issue = self.issues[rng.choice(hot) if rng.random() < 0.6 else rng.choice(ids)]
            limit = self._issue_end(issue, end)
            wl = Worklog()
            wl.issue_id = issue.id
            wl.started = rng.randint(issue.created, max(issue.created, limit - HOUR_MS))
            wl.created = min(limit, wl.started + rng.randint(0, 2 * DAY_MS))
            wl.updated = wl.created if rng.random() < 0.75 else rng.randint(wl.created, limit)
            author = rng.choice(self.staff)
            wl.author = author.account_id
            wl.update_author = author.account_id if rng.random() < 0.9 else rng.choice(self.staff).account_id
            wl.seconds = rng.choice(durations) if rng.random() < 0.85 else 60 * rng.randint(1, 900)
            wl.comment_seed = None if rng.random() < 0.3 else rng.getrandbits(48)
            r = rng.random()
            wl.visibility = None
            if r < 0.04:
                wl.visibility = {
                    "type": "group",
                    "value": "jira-developers",
                    "identifier": "276f955c-63d7-42c8-9520-92d01dca0625",
                }
            elif r < 0.06:
                wl.visibility = {"type": "role", "value": "Developers", "identifier": "Developers"}
            records.append(wl)
        records.sort(key=lambda w: (w.created, w.started))
        for wl in records:
            wl.id = self.next_worklog_id
            self.next_worklog_id += 1
            self.worklogs[wl.id] = wl
            issue = self.issues[wl.issue_id]
            issue.worklogs.append(wl.id)
            if wl.updated > issue.updated:
                issue.updated = wl.updated  # logging work updates the issue, as in Jira

    def _gen_comments(self, rng: random.Random, end: int) -> None:
        ids = list(self.issues)
        n = round(len(ids) * self.cfg.comments_per_issue)
        if n <= 0 or not ids:
            return
        records: list[Comment] = []
        for _ in range(n):
            issue = self.issues[rng.choice(ids)]
            limit = self._issue_end(issue, end)
            cm = Comment()
            cm.issue_id = issue.id
            cm.created = rng.randint(issue.created, limit)
            cm.updated = cm.created if rng.random() < 0.8 else rng.randint(cm.created, limit)
            cm.author = rng.choice(self.staff).account_id
            cm.update_author = cm.author
            cm.body_seed = rng.getrandbits(48)
            project = self.projects_by_id[issue.project_id]
            cm.jsd_public = None if project.type_key != "service_desk" else rng.random() < 0.7
            cm.visibility = None
            if rng.random() < 0.05:
                cm.visibility = {"type": "role", "value": "Administrators", "identifier": "Administrators"}
            records.append(cm)
        records.sort(key=lambda c: c.created)
        for cm in records:
            cm.id = self.next_comment_id
            self.next_comment_id += 1
            self.comments[cm.id] = cm
            issue = self.issues[cm.issue_id]
            issue.comments.append(cm.id)
            if cm.updated > issue.updated:
                issue.updated = cm.updated

    # ---------------------------------------------------------------- helpers
    def _new_issue_id(self) -> int:
        iid = self.next_issue_id
        self.next_issue_id += 1
        return iid

    def _next_num(self, project_id: int) -> int:
        self.project_counters[project_id] += 1
        return self.project_counters[project_id]

    def _add_issue(self, issue: Issue) -> None:
        self.issues[issue.id] = issue
        self.key_index[issue.key] = issue.id
        if issue.parent_id is not None:
            self.issues[issue.parent_id].children.append(issue.id)

    def resolve_issue(self, id_or_key: str) -> Issue | None:
        """Issue by id or by key; old keys of moved issues still resolve, as in Jira."""
        s = str(id_or_key).strip()
        if s.isdigit():
            return self.issues.get(int(s))
        iid = self.key_index.get(s.upper())
        return self.issues.get(iid) if iid is not None else None

    def description(self, issue: Issue) -> dict[str, Any] | None:
        seed = issue.desc_seed
        if seed is None:
            return None
        if seed < 0:
            return self._huge(issue)[0]
        return self.pool.doc(seed, "description")

    def description_bytes(self, issue: Issue) -> bytes:
        seed = issue.desc_seed
        if seed is None:
            return b"null"
        if seed < 0:
            return self._huge(issue)[1]
        return self.pool.doc_bytes(seed, "description")

    def _huge(self, issue: Issue) -> tuple[dict[str, Any], bytes]:
        if issue.desc is _UNSET:
            d = adf.huge_description(issue.desc_seed, self.mention_users, self.cfg.huge_description_bytes)
            issue.desc = (d, json.dumps(d, ensure_ascii=False, separators=(",", ":")).encode())
        return issue.desc

    def worklog_comment(self, wl: Worklog) -> dict[str, Any] | None:
        return None if wl.comment_seed is None else self.pool.doc(wl.comment_seed, "short")

    def comment_body(self, cm: Comment) -> dict[str, Any]:
        return self.pool.doc(cm.body_seed, "comment")

    def touch_render(self, issue: Issue) -> None:
        """Invalidate cached bodies of an issue and of the issues that embed it (parent, subtasks)."""
        issue.version += 1
        issue.cache.clear()
        related = list(issue.children)
        if issue.parent_id is not None:
            related.append(issue.parent_id)
        for rid in related:
            other = self.issues.get(rid)
            if other is not None:
                other.version += 1
                other.cache.clear()

    def _wl_index_remove(self, wl: Worklog) -> None:
        i = bisect.bisect_left(self.wl_updated, (wl.updated, wl.id))
        if i < len(self.wl_updated) and self.wl_updated[i] == (wl.updated, wl.id):
            del self.wl_updated[i]

    def _stamp_issue(self, issue: Issue, now: int) -> None:
        issue.updated = max(issue.updated, now)
        self.touch_render(issue)

    # ---------------------------------------------------------------- mutations
    def mutate(
        self,
        rng: random.Random,
        now: int,
        *,
        update_issues: int = 0,
        create_issues: int = 0,
        move_issues: int = 0,
        delete_issues: int = 0,
        add_worklogs: int = 0,
        update_worklogs: int = 0,
        delete_worklogs: int = 0,
        archive_project: str | None = None,
        deactivate_user: str | None = None,
        change_user: str | None = None,
    ) -> dict[str, Any]:
        """Apply changes stamped with `now`; returns the ids each kind of change touched.

        Worklog changes also move their issue's `updated` (as logging work does in Jira); those
        issues are listed under ``touched_issues``.
        """
        out: dict[str, Any] = {
            k: []
            for k in (
                "updated_issues",
                "created_issues",
                "moved_issues",
                "deleted_issues",
                "added_worklogs",
                "updated_worklogs",
                "deleted_worklogs",
                "touched_issues",
            )
        }
        out["moved_keys"] = {}
        live_projects = [p for p in self.projects if not p.archived]

        def pick_issues(k: int, pred: Any = None) -> list[Issue]:
            pool = [
                i
                for i in self.issues.values()
                if not self.projects_by_id[i.project_id].archived and (pred is None or pred(i))
            ]
            return rng.sample(pool, min(k, len(pool)))

        for issue in pick_issues(update_issues):
            self._update_issue(rng, issue, now)
            out["updated_issues"].append(issue.id)
        for _ in range(create_issues if live_projects else 0):
            out["created_issues"].append(self._create_issue(rng, rng.choice(live_projects), now).id)
        if len(live_projects) >= 2:
            for issue in pick_issues(move_issues, lambda i: not i.children and i.parent_id is None):
                old = issue.key
                target = rng.choice([p for p in live_projects if p.id != issue.project_id])
                self._move_issue(issue, target, now)
                out["moved_issues"].append(issue.id)
                out["moved_keys"][old] = issue.key
        for issue in pick_issues(delete_issues):
            if issue.id not in self.issues:
                continue  # already gone as a subtask of an earlier pick
            gone, gone_wl = self._delete_issue(issue, now)
            out["deleted_issues"].extend(gone)
            out["deleted_worklogs"].extend(gone_wl)
        touched: set[int] = set()
        for issue in pick_issues(add_worklogs):
            wl = self._add_worklog(rng, issue, now)
            out["added_worklogs"].append(wl.id)
            touched.add(issue.id)
        wl_pool = [
            w
            for w in self.worklogs.values()
            if not self.projects_by_id[self.issues[w.issue_id].project_id].archived
        ]
        chosen = rng.sample(wl_pool, min(update_worklogs + delete_worklogs, len(wl_pool)))
        for wl in chosen[:update_worklogs]:
            self._wl_index_remove(wl)
            wl.seconds = rng.choice((900, 1800, 3600, 7200)) + 60 * rng.randint(0, 30)
            wl.comment_seed = rng.getrandbits(48)
            wl.updated = max(now, wl.updated)
            wl.update_author = rng.choice(self.staff).account_id
            wl.cache.clear()
            bisect.insort(self.wl_updated, (wl.updated, wl.id))
            self._stamp_issue(self.issues[wl.issue_id], now)
            out["updated_worklogs"].append(wl.id)
            touched.add(wl.issue_id)
        for wl in chosen[update_worklogs:]:
            issue = self.issues[wl.issue_id]
            self._remove_worklog(wl, now)
            self._stamp_issue(issue, now)
            out["deleted_worklogs"].append(wl.id)
            touched.add(issue.id)
        out["touched_issues"] = sorted(touched)
        if archive_project is not None:
            p = self.projects_by_key.get(archive_project.upper())
            if p is None:
                raise KeyError(f"no project {archive_project!r}")
            p.archived_ms = now
            p.archived_by = self.staff[0].account_id
            out["archived_project"] = p.id
            self.render_epoch += 1
        if deactivate_user is not None:
            self.users_by_id[deactivate_user].active = False
            out["deactivated_user"] = deactivate_user
            self.render_epoch += 1
        if change_user is not None:
            u = self.users_by_id[change_user]
            u.display_name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
            u.email = None if u.email is None else f"renamed.{rng.randint(1, 9999)}@example.com"
            u.time_zone = rng.choice(TIME_ZONES) if u.account_id != self.users[0].account_id else u.time_zone
            out["changed_user"] = change_user
            self.render_epoch += 1
        self.data_version += 1
        return out

    def _update_issue(self, rng: random.Random, issue: Issue, now: int) -> None:
        issue.summary = adf.summary_text(rng)
        new_status = rng.choice(tuple(STATUSES))
        if new_status != issue.status:
            issue.status = new_status
            issue.status_changed = now
        if STATUSES[issue.status][1] == "done":
            if issue.resolutiondate is None:
                issue.resolutiondate = now
        else:
            issue.resolutiondate = None
        issue.priority = rng.choice(tuple(PRIORITIES))
        issue.assignee = None if rng.random() < 0.15 else rng.choice(self.staff).account_id
        issue.labels = sorted(set(rng.sample(LABELS, rng.randint(0, 3))))
        if issue.desc_seed is None or issue.desc_seed >= 0:
            issue.desc_seed = rng.getrandbits(48)
            issue.desc = _UNSET
        issue.fseed = rng.getrandbits(48)
        issue.updated = max(issue.updated, now)
        self.touch_render(issue)

    def _create_issue(self, rng: random.Random, project: Project, now: int) -> Issue:
        issue = Issue()
        issue.id = self._new_issue_id()
        issue.project_id = project.id
        issue.num = self._next_num(project.id)
        issue.key = f"{project.key}-{issue.num}"
        issue.itype = rng.choice(STANDARD_TYPES)
        issue.parent_id = None
        issue.created = issue.updated = issue.status_changed = now
        issue.status = "To Do"
        issue.resolutiondate = None
        issue.priority = rng.choice(tuple(PRIORITIES))
        issue.summary = adf.summary_text(rng)
        issue.labels = sorted(set(rng.sample(LABELS, rng.randint(0, 2))))
        issue.reporter = rng.choice(self.staff).account_id
        issue.assignee = None
        issue.desc_seed = rng.getrandbits(48)
        issue.desc = _UNSET
        issue.fseed = rng.getrandbits(48)
        issue.duedate = None
        self._add_issue(issue)
        return issue

    def _move_issue(self, issue: Issue, target: Project, now: int) -> None:
        issue.old_keys.append(issue.key)
        issue.project_id = target.id
        issue.num = self._next_num(target.id)
        issue.key = f"{target.key}-{issue.num}"
        self.key_index[issue.key] = issue.id
        issue.updated = max(issue.updated, now)
        self.touch_render(issue)

    def _delete_issue(self, issue: Issue, now: int) -> tuple[list[int], list[int]]:
        """Delete an issue with its subtasks, worklogs and comments (Jira deletes subtasks too)."""
        gone: list[int] = []
        gone_wl: list[int] = []
        for child_id in list(issue.children):
            child = self.issues.get(child_id)
            if child is not None:
                g, gw = self._delete_issue(child, now)
                gone.extend(g)
                gone_wl.extend(gw)
        for wid in list(issue.worklogs):
            wl = self.worklogs.get(wid)
            if wl is not None:
                self._remove_worklog(wl, now)
                gone_wl.append(wid)
        for cid in issue.comments:
            self.comments.pop(cid, None)
        if issue.parent_id is not None and issue.parent_id in self.issues:
            parent = self.issues[issue.parent_id]
            parent.children.remove(issue.id)
            self.touch_render(parent)
        for k in [issue.key, *issue.old_keys]:
            if self.key_index.get(k) == issue.id:
                del self.key_index[k]
        del self.issues[issue.id]
        self.deleted_issue_ids.add(issue.id)
        gone.append(issue.id)
        return gone, gone_wl

    def _add_worklog(self, rng: random.Random, issue: Issue, now: int) -> Worklog:
        wl = Worklog()
        wl.id = self.next_worklog_id
        self.next_worklog_id += 1
        wl.issue_id = issue.id
        wl.started = now - rng.randint(HOUR_MS, 3 * DAY_MS)
        wl.created = wl.updated = now
        wl.author = wl.update_author = rng.choice(self.staff).account_id
        wl.seconds = rng.choice((900, 1800, 3600, 5400, 7200))
        wl.comment_seed = None if rng.random() < 0.3 else rng.getrandbits(48)
        wl.visibility = None
        self.worklogs[wl.id] = wl
        issue.worklogs.append(wl.id)
        bisect.insort(self.wl_updated, (wl.updated, wl.id))
        self._stamp_issue(issue, now)
        return wl

    def _remove_worklog(self, wl: Worklog, now: int) -> None:
        self._wl_index_remove(wl)
        del self.worklogs[wl.id]
        issue = self.issues.get(wl.issue_id)
        if issue is not None and wl.id in issue.worklogs:
            issue.worklogs.remove(wl.id)
        self.deleted_worklog_ids.add(wl.id)
        bisect.insort(self.wl_deleted, (now, wl.id))

    def live_issues(self) -> Iterable[Issue]:
        return self.issues.values()


def _rand_uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def make_sites(cfg: SimConfig) -> list[Site]:
    rng = random.Random(f"jira-sim-sites:{cfg.seed}")
    sites = []
    for i in range(max(1, cfg.sites)):
        name = SITE_NAMES[i] if i < len(SITE_NAMES) else f"site{i}-sim"
        sites.append(Site(cloud_id=_rand_uuid(rng), name=name, url=f"https://{name}.atlassian.net"))
    return sites
