"""A JQL subset with Jira's semantics where they bite incremental extraction.

Supported: ``project``, ``created``/``createdDate``, ``updated``/``updatedDate``, ``id``,
``key``/``issuekey``, ``issuetype``/``type``, ``status``, ``parent`` with ``= != > >= < <= in (..)
not in (..)``, ``AND``/``OR``/``NOT``, parentheses, and ``ORDER BY`` over
updated|created|id|key (ASC/DESC).

Date literals (``"yyyy/MM/dd HH:mm"``, ``"yyyy-MM-dd HH:mm"``, ``"yyyy/MM/dd"``,
``"yyyy-MM-dd"``) are read in the *searching user's* time zone with minute granularity, exactly
the trap Jira sets: a client that formats a UTC cursor naively skips or repeats issues when the
user is not on UTC. Bare integers are epoch milliseconds (zone-free). Relative periods (``-5d``,
``"-2h 30m"``) and ``now()`` are relative to simulator time.

Errors raise `JqlError` with Jira's message texts; the endpoints answer them with 400.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from .model import STATUSES, Issue, SiteData

UNBOUNDED = "Unbounded JQL queries are not allowed here. Please add a search restriction to your query."
DATE_HELP = (
    "Valid formats include: 'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd', "
    "or a period format e.g. '-5d', '4w 2d'."
)


class JqlError(ValueError):
    """A JQL error Jira would answer with 400; `str()` is the user-facing message."""


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<op>!=|>=|<=|!~|[=<>~(),])
      | (?P<word>[^\s"'=<>!~(),]+)
    )""",
    re.VERBOSE,
)

FIELD_ALIASES = {
    "project": "project",
    "created": "created",
    "createddate": "created",
    "updated": "updated",
    "updateddate": "updated",
    "id": "id",
    "key": "key",
    "issuekey": "key",
    "issuetype": "issuetype",
    "type": "issuetype",
    "status": "status",
    "parent": "parent",
}
#: real Jira fields this subset does not search on: a clear 400 instead of "does not exist"
KNOWN_JIRA_FIELDS = frozenset(
    {
        "assignee",
        "reporter",
        "creator",
        "summary",
        "description",
        "labels",
        "priority",
        "resolution",
        "resolved",
        "resolutiondate",
        "due",
        "duedate",
        "text",
        "comment",
        "worklogdate",
        "worklogauthor",
        "sprint",
        "fixversion",
        "component",
        "statuscategory",
        "environment",
        "watcher",
        "level",
    }
)
ORDER_FIELDS = {
    "updated": "updated",
    "updateddate": "updated",
    "created": "created",
    "createddate": "created",
    "id": "id",
    "key": "key",
    "issuekey": "key",
}
_PERIOD = re.compile(r"^([-+]?)\s*((?:\d+\s*[wdhm]\s*)+)$", re.IGNORECASE)
_PERIOD_PART = re.compile(r"(\d+)\s*([wdhm])", re.IGNORECASE)
_UNIT_MS = {"w": 7 * 86_400_000, "d": 86_400_000, "h": 3_600_000, "m": 60_000}
_DATE = re.compile(r"^(\d{4})[-/](\d{1,2})[-/](\d{1,2})(?:\s+(\d{1,2}):(\d{2}))?$")


@dataclass
class Tok:
    kind: str  # str | op | word | end
    value: str
    pos: int


@dataclass
class Query:
    """A compiled query: a predicate over issues plus the sort specification."""

    predicate: Callable[[Issue], bool] | None
    order: list[tuple[str, bool]] = field(default_factory=list)  # (field, descending)
    time_dependent: bool = False


def tokenize(jql: str) -> list[Tok]:
    toks: list[Tok] = []
    pos = 0
    while pos < len(jql):
        if jql[pos:].strip() == "":
            break
        m = _TOKEN.match(jql, pos)
        if not m:
            raise JqlError(
                f"Error in the JQL Query: The character '{jql[pos]}' is a reserved JQL character. "
                f"(line 1, character {pos + 1})"
            )
        kind = m.lastgroup or "word"
        value = m.group(kind)
        if kind == "str":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        toks.append(Tok(kind, value, m.start(kind) + 1))
        pos = m.end()
    toks.append(Tok("end", "", len(jql) + 1))
    return toks


class _Parser:
    def __init__(self, jql: str, site: SiteData, tz: str, now_ms: int) -> None:
        self.toks = tokenize(jql)
        self.i = 0
        self.site = site
        self.tz = ZoneInfo(tz)
        self.now_ms = now_ms
        self.time_dependent = False

    # -------------------------------------------------------------- token helpers
    def peek(self) -> Tok:
        return self.toks[self.i]

    def next(self) -> Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def is_word(self, *words: str) -> bool:
        tok = self.peek()
        return tok.kind == "word" and tok.value.lower() in words

    def expect_op(self, op: str) -> None:
        tok = self.next()
        if tok.kind != "op" or tok.value != op:
            raise self.error(f"Expecting '{op}' but got {self.describe(tok)}.", tok)

    @staticmethod
    def describe(tok: Tok) -> str:
        return "the end of the query" if tok.kind == "end" else f"'{tok.value}'"

    @staticmethod
    def error(msg: str, tok: Tok) -> JqlError:
        return JqlError(f"Error in the JQL Query: {msg} (line 1, character {tok.pos})")

    # -------------------------------------------------------------- grammar
    def parse(self) -> Query:
        predicate = None
        if not (self.is_word("order") or self.peek().kind == "end"):
            predicate = self.parse_or()
        order: list[tuple[str, bool]] = []
        if self.is_word("order"):
            self.next()
            if not self.is_word("by"):
                raise self.error(f"Expecting 'by' but got {self.describe(self.peek())}.", self.peek())
            self.next()
            while True:
                tok = self.next()
                if tok.kind not in ("word", "str"):
                    raise self.error(f"Expecting a field name but got {self.describe(tok)}.", tok)
                name = ORDER_FIELDS.get(tok.value.lower())
                if name is None:
                    if tok.value.lower() in FIELD_ALIASES:
                        raise JqlError(f"Field '{tok.value}' does not support sorting.")
                    raise JqlError(
                        f"Field '{tok.value}' does not exist or you do not have permission to view it."
                    )
                desc = False
                if self.is_word("asc", "desc"):
                    desc = self.next().value.lower() == "desc"
                order.append((name, desc))
                if self.peek().kind == "op" and self.peek().value == ",":
                    self.next()
                    continue
                break
            if len(order) > 7:
                raise JqlError("The ORDER BY clause can contain at most 7 fields.")
        tok = self.peek()
        if tok.kind != "end":
            raise self.error(f"Expecting either 'OR' or 'AND' but got {self.describe(tok)}.", tok)
        return Query(predicate, order, self.time_dependent)

    def parse_or(self) -> Callable[[Issue], bool]:
        parts = [self.parse_and()]
        while self.is_word("or"):
            self.next()
            parts.append(self.parse_and())
        if len(parts) == 1:
            return parts[0]
        return lambda i: any(p(i) for p in parts)

    def parse_and(self) -> Callable[[Issue], bool]:
        parts = [self.parse_not()]
        while self.is_word("and"):
            self.next()
            parts.append(self.parse_not())
        if len(parts) == 1:
            return parts[0]
        return lambda i: all(p(i) for p in parts)

    def parse_not(self) -> Callable[[Issue], bool]:
        if self.is_word("not"):
            self.next()
            inner = self.parse_not()
            return lambda i: not inner(i)
        tok = self.peek()
        if tok.kind == "op" and tok.value == "(":
            self.next()
            inner = self.parse_or()
            self.expect_op(")")
            return inner
        return self.parse_clause()

    def parse_clause(self) -> Callable[[Issue], bool]:
        tok = self.next()
        if tok.kind not in ("word", "str"):
            raise self.error(f"Expecting a field name but got {self.describe(tok)}.", tok)
        fname = FIELD_ALIASES.get(tok.value.lower())
        if fname is None:
            if tok.value.lower() in KNOWN_JIRA_FIELDS:
                raise JqlError(
                    f"Field '{tok.value}' exists in Jira but is outside the simulator's JQL subset."
                )
            raise JqlError(f"Field '{tok.value}' does not exist or you do not have permission to view it.")
        op_tok = self.next()
        if op_tok.kind == "word" and op_tok.value.lower() == "in":
            op = "in"
        elif op_tok.kind == "word" and op_tok.value.lower() == "not" and self.is_word("in"):
            self.next()
            op = "not in"
        elif op_tok.kind == "op" and op_tok.value in ("=", "!=", ">", ">=", "<", "<="):
            op = op_tok.value
        elif op_tok.kind == "word" and op_tok.value.lower() in ("is", "was", "changed"):
            raise JqlError(
                f"The operator '{op_tok.value.upper()}' is not supported by the '{tok.value}' field "
                "in this simulator."
            )
        else:
            raise self.error(f"Expecting operator but got {self.describe(op_tok)}.", op_tok)
        if op in ("in", "not in"):
            self.expect_op("(")
            values = [self.parse_value()]
            while self.peek().kind == "op" and self.peek().value == ",":
                self.next()
                values.append(self.parse_value())
            self.expect_op(")")
        else:
            values = [self.parse_value()]
        return self.compile(tok.value, fname, op, values)

    def parse_value(self) -> Tok:
        tok = self.next()
        if tok.kind == "str":
            return tok
        if tok.kind == "word":
            if self.peek().kind == "op" and self.peek().value == "(":
                self.next()
                self.expect_op(")")
                return Tok("func", tok.value.lower(), tok.pos)
            return tok
        raise self.error(f"Expecting either a value, list or function but got {self.describe(tok)}.", tok)

    # -------------------------------------------------------------- semantics
    def compile(self, raw_name: str, fname: str, op: str, values: list[Tok]) -> Callable[[Issue], bool]:
        if fname in ("created", "updated"):
            ms = [self.date_value(raw_name, v) for v in values]
            return _compare(op, ms, (lambda i: i.created) if fname == "created" else (lambda i: i.updated))
        if fname == "id":
            ids = []
            for v in values:
                if not v.value.isdigit():
                    raise JqlError(f"The value '{v.value}' does not exist for the field '{raw_name}'.")
                ids.append(int(v.value))
            return _compare(op, ids, lambda i: i.id)
        if fname in ("key", "parent"):
            ids = []
            for v in values:
                issue = self.site.resolve_issue(v.value)
                if issue is None:
                    raise JqlError(f"An issue with key '{v.value}' does not exist for field '{raw_name}'.")
                ids.append(issue.id)
            if fname == "key":
                return _compare(op, ids, lambda i: i.id)
            if op not in ("=", "!=", "in", "not in"):
                raise JqlError(f"The operator '{op}' is not supported by the '{raw_name}' field.")
            return _compare(op, ids, lambda i: i.parent_id if i.parent_id is not None else -1)
        if op not in ("=", "!=", "in", "not in"):
            raise JqlError(f"The operator '{op}' is not supported by the '{raw_name}' field.")
        if fname == "project":
            pids = []
            for v in values:
                p = self.site.projects_by_key.get(v.value.upper())
                if p is None and v.value.isdigit():
                    p = self.site.projects_by_id.get(int(v.value))
                if p is None or p.archived:
                    # archived projects are not browsable: Jira answers as if they did not exist
                    raise JqlError(f"The value '{v.value}' does not exist for the field '{raw_name}'.")
                pids.append(p.id)
            return _compare(op, pids, lambda i: i.project_id)
        if fname == "issuetype":
            names = [v.value.lower() for v in values]
            known = {"epic", "story", "task", "bug", "subtask", "sub-task"}
            for v, n in zip(values, names, strict=True):
                if n not in known:
                    raise JqlError(f"The value '{v.value}' does not exist for the field '{raw_name}'.")
            names = ["subtask" if n == "sub-task" else n for n in names]
            return _compare(op, names, lambda i: i.itype.lower())
        # status
        lookup = {s.lower(): s for s in STATUSES}
        stats = []
        for v in values:
            if v.value.lower() not in lookup:
                raise JqlError(f"The value '{v.value}' does not exist for the field '{raw_name}'.")
            stats.append(lookup[v.value.lower()])
        return _compare(op, stats, lambda i: i.status)

    def date_value(self, raw_name: str, tok: Tok) -> int:
        if tok.kind == "func":
            if tok.value in ("now",):
                self.time_dependent = True
                return self.now_ms
            raise JqlError(f"Unable to find JQL function '{tok.value}()'.")
        s = tok.value.strip()
        if (re.fullmatch(r"-?\d+", s) and tok.kind == "word") or re.fullmatch(r"\d{9,}", s):
            return int(s)  # epoch milliseconds, independent of any time zone
        m = _DATE.match(s)
        if m:
            y, mo, d, hh, mm = m.groups()
            try:
                local = datetime(int(y), int(mo), int(d), int(hh or 0), int(mm or 0), tzinfo=self.tz)
            except ValueError:
                raise JqlError(f"Date value '{s}' for field '{raw_name}' is invalid. {DATE_HELP}") from None
            return int(local.timestamp()) * 1000
        pm = _PERIOD.match(s)
        if pm:
            sign = -1 if pm.group(1) == "-" else 1
            total = sum(int(n) * _UNIT_MS[u.lower()] for n, u in _PERIOD_PART.findall(pm.group(2)))
            self.time_dependent = True
            # Jira rounds relative periods to the minute
            return (self.now_ms + sign * total) // 60_000 * 60_000
        raise JqlError(f"Date value '{s}' for field '{raw_name}' is invalid. {DATE_HELP}")


def _compare(op: str, values: list[Any], get: Callable[[Issue], Any]) -> Callable[[Issue], bool]:
    if op in ("in", "not in"):
        allowed = frozenset(values)
        if op == "in":
            return lambda i: get(i) in allowed
        return lambda i: get(i) not in allowed
    v = values[0]
    if op == "=":
        return lambda i: get(i) == v
    if op == "!=":
        return lambda i: get(i) != v
    if op == ">":
        return lambda i: get(i) > v
    if op == ">=":
        return lambda i: get(i) >= v
    if op == "<":
        return lambda i: get(i) < v
    return lambda i: get(i) <= v


def compile_jql(jql: str | None, site: SiteData, tz: str, now_ms: int) -> Query:
    """Parse and bind `jql`; raises `JqlError` for syntax errors, unknown fields/values and
    unbounded queries (no restriction, e.g. empty or only ``ORDER BY``)."""
    q = _Parser(jql or "", site, tz, now_ms).parse()
    if q.predicate is None:
        raise JqlError(UNBOUNDED)
    return q


def sort_key_fn(order: list[tuple[str, bool]], site: SiteData) -> Callable[[Issue], tuple[int, ...]]:
    """A key of integers (negated for DESC) so that search-after tokens can bisect the result.

    Without ORDER BY the order is ``key DESC``-like (id descending). Ties break on id in the
    direction of the last sort field, which makes the order total and paging stable.
    """
    spec = order or [("id", True)]
    projects = site.projects_by_id
    getters: list[Callable[[Issue], Any]] = []
    for name, desc in spec:
        s = -1 if desc else 1
        if name == "updated":
            getters.append(lambda i, s=s: (s * i.updated,))
        elif name == "created":
            getters.append(lambda i, s=s: (s * i.created,))
        elif name == "id":
            getters.append(lambda i, s=s: (s * i.id,))
        else:
            getters.append(lambda i, s=s: (s * projects[i.project_id].rank, s * i.num))
    tie = -1 if spec[-1][1] else 1
    if spec[-1][0] != "id":
        getters.append(lambda i: (tie * i.id,))

    def key(issue: Issue) -> tuple[int, ...]:
        out: tuple[int, ...] = ()
        for g in getters:
            out += g(issue)
        return out

    return key
