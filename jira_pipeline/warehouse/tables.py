"""Table definitions of the warehouse (CONTRACT §4) and the one registry everything else derives from.

The SQLModel classes are the single source of truth: `TABLES` reads their SQLAlchemy columns to
derive key columns, JSON columns, logical column types and the Arrow schema of the Parquet files,
so the Dagster column schema, the Parquet writer and the store can never drift apart.

Portability choices (the same code runs on SQLite and PostgreSQL):

* Timestamps use `UTCDateTime`: `timestamptz` on PostgreSQL; on SQLite SQLAlchemy's fixed-width
  `YYYY-MM-DD HH:MM:SS.ffffff` text, always in UTC, so that string comparison in SQL (the
  "newer `updated` wins" predicate of the upsert) is chronological comparison. Naive datetimes are
  **rejected** with `ValueError`: a naive value is ambiguous (Jira JQL reads datetimes in the
  searching user's zone), and silently calling it UTC is exactly the bug that skips issues.
* JSON columns are `JSON` with a `jsonb` variant on PostgreSQL. Python `None` is stored as SQL
  NULL (not JSON `null`), so "absent" has one representation on both dialects.
* Entity tables carry `content_hash` (sha256 of the contract columns, computed by the store) so a
  re-run of the same data can be recognised and left untouched, plus the soft-delete bookkeeping.

Only the tables listed in `WAREHOUSE_TABLES` are created by the store: `SQLModel.metadata` is
process-global and other modules may register unrelated tables on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlmodel import Field, SQLModel


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every dialect; naive datetimes are refused on write."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.TIMESTAMP(timezone=True))
        # SQLite has no datetime type: SQLAlchemy's DATETIME stores a fixed-width string that
        # always includes microseconds, hence sorts lexically == chronologically (in UTC).
        return dialect.type_descriptor(sqlite.DATETIME())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a timezone-aware datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                "naive datetime refused: the warehouse stores timezone-aware UTC only "
                "(attach a tzinfo, e.g. datetime.now(UTC))"
            )
        value = value.astimezone(UTC)
        if dialect.name == "postgresql":
            return value
        return value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _json_type() -> sa.types.TypeEngine[Any]:
    return sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


JSONType = _json_type()


def _ts(nullable: bool = True, **kw: Any) -> Any:
    return Field(default=None, sa_type=UTCDateTime, nullable=nullable, **kw)


def _json(nullable: bool = True) -> Any:
    return Field(default=None, sa_type=JSONType, nullable=nullable)


def _text(nullable: bool = True) -> Any:
    return Field(default=None, sa_type=sa.Text, nullable=nullable)


def _bool_false() -> Any:
    return Field(default=False, nullable=False, sa_column_kwargs={"server_default": sa.false()})


# -- entity tables (CONTRACT §4) --------------------------------------------------------------


class JiraProject(SQLModel, table=True):
    __tablename__ = "jira_projects"

    cloud_id: str = Field(primary_key=True)
    id: str = Field(primary_key=True)
    key: str | None = None
    name: str | None = _text()
    project_type_key: str | None = None
    is_private: bool | None = None
    lead_account_id: str | None = None
    is_archived: bool | None = None
    url: str | None = _text()
    raw: dict[str, Any] | None = _json()
    content_hash: str = Field(nullable=False)
    is_deleted: bool = _bool_false()
    deleted_at: datetime | None = _ts()
    synced_at: datetime = _ts(nullable=False)


class JiraUser(SQLModel, table=True):
    __tablename__ = "jira_users"

    cloud_id: str = Field(primary_key=True)
    account_id: str = Field(primary_key=True)
    account_type: str | None = None
    display_name: str | None = _text()
    email_address: str | None = _text()
    active: bool | None = None
    time_zone: str | None = None
    raw: dict[str, Any] | None = _json()
    content_hash: str = Field(nullable=False)
    is_deleted: bool = _bool_false()
    deleted_at: datetime | None = _ts()
    synced_at: datetime = _ts(nullable=False)


class JiraIssue(SQLModel, table=True):
    __tablename__ = "jira_issues"
    __table_args__ = (
        sa.Index("ix_jira_issues_cloud_project", "cloud_id", "project_id"),
        sa.Index("ix_jira_issues_cloud_updated", "cloud_id", "updated"),
    )

    cloud_id: str = Field(primary_key=True)
    id: str = Field(primary_key=True)
    key: str | None = None
    project_id: str | None = None
    project_key: str | None = None
    issue_type: str | None = None
    status: str | None = None
    status_category: str | None = None
    priority: str | None = None
    summary: str | None = _text()
    description: str | None = _text()
    reporter_account_id: str | None = None
    assignee_account_id: str | None = None
    created: datetime | None = _ts()
    updated: datetime = _ts(nullable=False)
    resolution_date: datetime | None = _ts()
    labels: list[str] | None = _json()
    parent_key: str | None = None
    url: str | None = _text()
    fields: dict[str, Any] | None = _json()
    # Beyond the contract: custom fields by their display name (from /field), values made readable
    # (options -> value, users -> display name, textarea ADF -> Markdown) for the indexer.
    custom_fields: dict[str, Any] | None = _json()
    raw: dict[str, Any] | None = _json()
    content_hash: str = Field(nullable=False)
    is_deleted: bool = _bool_false()
    deleted_at: datetime | None = _ts()
    synced_at: datetime = _ts(nullable=False)


class JiraWorklog(SQLModel, table=True):
    __tablename__ = "jira_worklogs"
    __table_args__ = (
        sa.Index("ix_jira_worklogs_cloud_issue", "cloud_id", "issue_id"),
        sa.Index("ix_jira_worklogs_cloud_updated", "cloud_id", "updated"),
    )

    cloud_id: str = Field(primary_key=True)
    id: str = Field(primary_key=True)
    issue_id: str | None = None
    author_account_id: str | None = None
    started: datetime | None = _ts()
    time_spent_seconds: int | None = Field(default=None, sa_type=sa.BigInteger)
    comment: str | None = _text()
    created: datetime | None = _ts()
    updated: datetime = _ts(nullable=False)
    raw: dict[str, Any] | None = _json()
    content_hash: str = Field(nullable=False)
    is_deleted: bool = _bool_false()
    deleted_at: datetime | None = _ts()
    synced_at: datetime = _ts(nullable=False)


# -- bookkeeping tables -----------------------------------------------------------------------


class JiraSyncState(SQLModel, table=True):
    """Incremental cursors; written in the same transaction as the rows they cover."""

    __tablename__ = "jira_sync_state"

    cloud_id: str = Field(primary_key=True)
    stream: str = Field(primary_key=True)
    cursor: str = Field(sa_type=sa.Text, nullable=False)
    updated_at: datetime = _ts(nullable=False)


class JiraOAuthGrant(SQLModel, table=True):
    """One OAuth 3LO grant. Token columns hold ciphertext: encryption is the caller's job."""

    __tablename__ = "jira_oauth_grants"

    grant_id: str = Field(primary_key=True)
    client_id: str = Field(nullable=False)
    account_id: str | None = None
    refresh_token_enc: str = Field(sa_type=sa.Text, nullable=False)
    access_token_enc: str | None = _text()
    access_expires_at: datetime | None = _ts()
    scopes: list[str] | None = _json()
    sites: list[dict[str, Any]] | None = _json()
    created_at: datetime = _ts(nullable=False)
    refreshed_at: datetime | None = _ts()
    refresh_count: int = Field(default=0, nullable=False, sa_column_kwargs={"server_default": sa.text("0")})
    status: str = Field(default="active", nullable=False, sa_column_kwargs={"server_default": "active"})
    status_reason: str | None = _text()
    updated_at: datetime = _ts(nullable=False)


class JiraOAuthState(SQLModel, table=True):
    """Pending OAuth `state` values (stored hashed), consumed exactly once by the callback."""

    __tablename__ = "jira_oauth_states"
    __table_args__ = (sa.Index("ix_jira_oauth_states_expires_at", "expires_at"),)

    state_hash: str = Field(primary_key=True)
    created_at: datetime = _ts(nullable=False)
    expires_at: datetime = _ts(nullable=False)
    payload: dict[str, Any] | None = _json()


# -- registry ---------------------------------------------------------------------------------

BOOKKEEPING_COLUMNS: tuple[str, ...] = ("content_hash", "is_deleted", "deleted_at", "synced_at")
BATCH_ID_COLUMN = "_batch_id"

_ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "boolean": pa.bool_(),
    "int64": pa.int64(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "json": pa.string(),  # JSON text: Parquet has no portable JSON logical type readers agree on
}


def logical_type(column: sa.Column[Any]) -> str:
    """Map a SQL column to the logical type shared by the store, Parquet and Dagster metadata."""
    t = column.type
    if isinstance(t, UTCDateTime):
        return "timestamp"
    if isinstance(t, sa.types.TypeDecorator):  # e.g. SQLModel's AutoString
        t = t.impl_instance
    if isinstance(t, sa.JSON):
        return "json"
    if isinstance(t, sa.Boolean):
        return "boolean"
    if isinstance(t, sa.Integer):
        return "int64"
    if isinstance(t, sa.String):
        return "string"
    raise TypeError(f"no logical type for column {column.name} of type {t!r}")


@dataclass(frozen=True)
class TableSpec:
    """Everything a consumer needs to know about one entity table, derived from its model."""

    name: str
    model: type[SQLModel]
    key: tuple[str, ...]  # composite with cloud_id, e.g. ("cloud_id", "id")
    version_column: str | None  # "newer wins" column; None = content decides (projects, users)
    columns: tuple[str, ...]  # CONTRACT §4 columns, in table order
    description: str
    json_columns: tuple[str, ...] = field(init=False)
    column_types: dict[str, str] = field(init=False)  # logical types of every SQL column
    arrow_schema: pa.Schema = field(init=False)  # Parquet file schema (cloud_id lives in the path)

    def __post_init__(self) -> None:
        table = self.table
        types = {c.name: logical_type(c) for c in table.columns}
        object.__setattr__(self, "column_types", types)
        object.__setattr__(self, "json_columns", tuple(c for c in self.columns if types[c] == "json"))
        file_cols = [c for c in self.columns if c != "cloud_id"] + list(BOOKKEEPING_COLUMNS)
        fields_ = [pa.field(c, _ARROW_TYPES[types[c]], nullable=table.c[c].nullable) for c in file_cols]
        fields_.append(pa.field(BATCH_ID_COLUMN, pa.string(), nullable=False))
        object.__setattr__(self, "arrow_schema", pa.schema(fields_))

    @property
    def table(self) -> sa.Table:
        return self.model.__table__  # type: ignore[attr-defined,no-any-return]

    @property
    def id_column(self) -> str:
        """The key column besides cloud_id (what soft deletes and live_keys speak in)."""
        return self.key[1]

    @property
    def dataset_schema(self) -> pa.Schema:
        """Schema of the hive-partitioned dataset as read back: file schema + `cloud_id`."""
        return self.arrow_schema.append(pa.field("cloud_id", pa.string()))


def _spec(model: type[SQLModel], key: tuple[str, ...], version: str | None, description: str) -> TableSpec:
    table: sa.Table = model.__table__  # type: ignore[attr-defined]
    columns = tuple(c.name for c in table.columns if c.name not in BOOKKEEPING_COLUMNS)
    return TableSpec(
        name=table.name,
        model=model,
        key=key,
        version_column=version,
        columns=columns,
        description=description,
    )


TABLES: dict[str, TableSpec] = {
    s.name: s
    for s in (
        _spec(JiraProject, ("cloud_id", "id"), None, "Jira projects (live and archived) per site."),
        _spec(JiraUser, ("cloud_id", "account_id"), None, "Jira users visible to the grant per site."),
        _spec(
            JiraIssue,
            ("cloud_id", "id"),
            "updated",
            "Jira issues; description is Markdown converted from ADF; fields holds every field.",
        ),
        _spec(JiraWorklog, ("cloud_id", "id"), "updated", "Jira worklogs; comment is Markdown from ADF."),
    )
}

SyncStateTable: sa.Table = JiraSyncState.__table__  # type: ignore[attr-defined]
GrantsTable: sa.Table = JiraOAuthGrant.__table__  # type: ignore[attr-defined]
OAuthStatesTable: sa.Table = JiraOAuthState.__table__  # type: ignore[attr-defined]

WAREHOUSE_TABLES: list[sa.Table] = [s.table for s in TABLES.values()] + [
    SyncStateTable,
    GrantsTable,
    OAuthStatesTable,
]
