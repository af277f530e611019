"""The table store: batch upserts where the newer version always wins, soft deletes, cursors, grants.

Invariants this module keeps (and the tests prove on SQLite and PostgreSQL):

* **Newer never loses.** Versioned tables (issues, worklogs) are only overwritten by a strictly
  newer ``updated``, or by the same ``updated`` with different content (or over a soft-deleted
  row). Unversioned tables (projects, users) are overwritten when their content changed. The rule
  lives in the ``ON CONFLICT .. DO UPDATE .. WHERE`` of one native upsert, so it also holds
  between concurrent writers, not just within one process.
* **Re-runs are no-ops.** Identical rows are not written at all (``synced_at`` keeps its value);
  ``content_hash`` is computed here from the normalised contract columns.
* **One transaction per batch.** Rows, the stream cursor that covers them and (through ``sink``)
  the Parquet file all succeed together or not at all; the sink runs *before* COMMIT so the
  Parquet file exists before the table says the rows are there.
* **`synced_at` strictly increases per process.** Each batch gets one stamp, bumped by 1 µs if the
  clock did not move, so "latest version by ``synced_at``" in the Parquet dataset is unambiguous.

SQLite notes: several OS processes (Dagster step processes, the connector app) share one file. We
run it in WAL mode with a long busy timeout and take the write lock up front with
``BEGIN IMMEDIATE`` for every write transaction (the pysqlite driver's own implicit BEGIN is
disabled, per SQLAlchemy's "Transactions with SQLite and the sqlite3 driver" recipe). A deferred
transaction that later upgrades to a write in WAL mode fails with SQLITE_BUSY at once instead of
waiting, which is why the write lock must be taken at BEGIN.

Error messages and reprs only ever carry ``safe_url`` (password masked); statement parameters
are hidden from SQLAlchemy exceptions because grant rows hold token ciphertext.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url
from sqlmodel import SQLModel

from .tables import (
    BOOKKEEPING_COLUMNS,
    TABLES,
    WAREHOUSE_TABLES,
    GrantsTable,
    OAuthStatesTable,
    SyncStateTable,
    TableSpec,
    UTCDateTime,
)

Row = dict[str, Any]
Sink = Callable[[str, list[Row]], object]
CursorSpec = tuple[str, str, str]  # (cloud_id, stream, value)

SQLITE_BUSY_TIMEOUT_S = 60.0
"""How long a writer waits for a lock: SQLite's busy timeout, and PostgreSQL's lock_timeout in
`lock_grant`. Holders of `lock_grant` (an HTTP token refresh) must finish well within this, so
their HTTP timeouts must be shorter."""

OAUTH_STATE_PURGE_AFTER = timedelta(days=1)
"""Expired OAuth states are deleted this long after expiry (opportunistically, by put/consume)."""

_MAX_BIND_PARAMS = {"sqlite": 30_000, "postgresql": 60_000}  # SQLite >= 3.32: 32766; libpq: 65535
_MAX_CHUNK_ROWS = 500
_IMMEDIATE = "jira_pipeline_sqlite_immediate"
_PG_CREATE_LOCK = 0x6A6972615F7768  # advisory lock id serialising CREATE TABLE across processes
_ONE_US = timedelta(microseconds=1)
_RETRY_SQLSTATES = {"40P01", "40001"}  # PostgreSQL deadlock_detected, serialization_failure
_ATTEMPTS = 3

_stamp_lock = threading.Lock()
_last_stamp: datetime | None = None


def _json_dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@dataclass
class BatchResult:
    """Outcome of one write: counts plus the row versions now stored (what the sink received)."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    rows: list[Row] = field(default_factory=list)

    @property
    def written(self) -> int:
        return self.inserted + self.updated + self.deleted


# -- value normalisation ------------------------------------------------------------------------


def to_utc(value: Any, *, what: str = "timestamp") -> datetime | None:
    """Aware datetime or ISO-8601 string with offset -> aware UTC datetime; naive is an error."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{what}: not an ISO-8601 timestamp") from None
    if not isinstance(value, datetime):
        raise TypeError(f"{what}: expected datetime or ISO-8601 string, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what}: naive datetime refused (timezone-aware UTC only)")
    return value.astimezone(UTC)


def _strip_nul(value: Any) -> Any:
    """PostgreSQL text and jsonb cannot hold U+0000; drop it on both dialects so they agree."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list):
        return [_strip_nul(v) for v in value]
    if isinstance(value, dict):
        return {_strip_nul(k): _strip_nul(v) for k, v in value.items()}
    return value


def _coerce(spec: TableSpec, column: str, value: Any) -> Any:
    kind = spec.column_types[column]
    where = f"{spec.name}.{column}"
    if value is None:
        return None
    if kind == "string":
        if isinstance(value, str):
            return value.replace("\x00", "") if "\x00" in value else value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)  # Jira ids are numeric strings; accept ints without surprises
        raise TypeError(f"{where}: expected str, got {type(value).__name__}")
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        raise TypeError(f"{where}: expected bool, got {type(value).__name__}")
    if kind == "int64":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise TypeError(f"{where}: expected int, got {type(value).__name__}")
    if kind == "timestamp":
        return to_utc(value, what=where)
    if kind == "json":
        return value
    raise AssertionError(kind)


def _hash_default(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def normalize_row(spec: TableSpec, row: Mapping[str, Any]) -> Row:
    """Validate and normalise one incoming row; adds `content_hash`.

    Bookkeeping keys in the input (is_deleted, synced_at, ...) are ignored: the store owns them.
    Unknown keys are an error (they are almost always a mapping bug upstream).
    """
    unknown = set(row) - set(spec.columns) - set(BOOKKEEPING_COLUMNS)
    if unknown:
        raise ValueError(f"{spec.name}: unknown column(s) {sorted(unknown)}")
    out: Row = {c: _coerce(spec, c, row.get(c)) for c in spec.columns}
    required = spec.key + ((spec.version_column,) if spec.version_column else ())
    for col in required:
        if out[col] is None or out[col] == "":
            raise ValueError(f"{spec.name}: row is missing required column {col!r}")
    payload = _hash_payload(spec, out)
    if "\\u0000" in payload:  # json escapes NUL; rare, so only then walk the JSON values
        for col in spec.json_columns:
            out[col] = _strip_nul(out[col])
        payload = _hash_payload(spec, out)
    out["content_hash"] = hashlib.sha256(payload.encode()).hexdigest()
    return out


def _hash_payload(spec: TableSpec, row: Row) -> str:
    try:
        return json.dumps(
            [row[c] for c in spec.columns],
            default=_hash_default,
            sort_keys=True,
            ensure_ascii=False,
            separators=(",", ":"),
        )
    except (TypeError, ValueError) as e:
        raise ValueError(f"{spec.name}: row is not JSON serialisable ({e})") from None


# -- engine setup -------------------------------------------------------------------------------


def _on_connect_record_pid(dbapi_conn: Any, record: Any) -> None:
    record.info["pid"] = os.getpid()


def _on_checkout_check_pid(dbapi_conn: Any, record: Any, proxy: Any) -> None:
    # SQLAlchemy's documented guard: a pooled connection inherited through fork() must never be
    # used by the child (two processes on one socket / one SQLite handle corrupt each other).
    if record.info.get("pid") != os.getpid():
        record.dbapi_connection = proxy.dbapi_connection = None
        raise exc.DisconnectionError("connection belongs to another process; reconnecting")


def _sqlite_on_connect(dbapi_conn: Any, record: Any) -> None:
    dbapi_conn.isolation_level = None  # stop pysqlite's own (late, DML-only) BEGIN; we emit ours
    cur = dbapi_conn.cursor()
    try:
        cur.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cur.execute("PRAGMA journal_mode = WAL")
    finally:
        cur.close()


def _sqlite_on_begin(conn: Connection) -> None:
    immediate = conn.get_execution_options().get(_IMMEDIATE, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _make_engine(url: str) -> Engine:
    u = make_url(url)
    backend = u.get_backend_name()
    common: dict[str, Any] = {"json_serializer": _json_dumps, "hide_parameters": True}
    if backend == "sqlite":
        db = u.database or ""
        if db and db != ":memory:" and not db.startswith("file:"):
            Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(u, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S}, **common)
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
    elif backend == "postgresql":
        if u.drivername == "postgresql":
            u = u.set(drivername="postgresql+psycopg")  # the installed driver is psycopg 3
        engine = sa.create_engine(u, pool_pre_ping=True, **common)
    else:
        safe = u.render_as_string(hide_password=True)
        raise ValueError(f"unsupported warehouse URL {safe}: use sqlite:///... or postgresql+psycopg://...")
    event.listen(engine, "connect", _on_connect_record_pid)
    event.listen(engine, "checkout", _on_checkout_check_pid)
    return engine


def _chunks(seq: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


def _discard(sink_output: object) -> None:
    """Best effort: remove files a sink wrote for a transaction that then failed to commit."""
    if isinstance(sink_output, list | tuple):
        for p in sink_output:
            if isinstance(p, str | os.PathLike):
                Path(p).unlink(missing_ok=True)


# -- the store ----------------------------------------------------------------------------------


class Warehouse:
    """Storage of Jira rows, cursors, OAuth grants and OAuth states (SQLite or PostgreSQL)."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        self.safe_url: str = make_url(url).render_as_string(hide_password=True)
        self.engine: Engine = _make_engine(url)
        self.dialect: str = self.engine.dialect.name
        self._insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        if create:
            self.create_tables()

    def __repr__(self) -> str:
        return f"Warehouse({self.safe_url!r})"

    def close(self) -> None:
        self.engine.dispose()

    # -- plumbing

    @contextmanager
    def _tx(self, *, write: bool) -> Iterator[Connection]:
        """One transaction; on SQLite writes take the database write lock at BEGIN."""
        with self.engine.connect() as conn:
            if write and self.dialect == "sqlite":
                conn.execution_options(**{_IMMEDIATE: True})
            with conn.begin():
                yield conn

    @staticmethod
    def _stamp(value: datetime | None = None) -> datetime:
        """The batch's `synced_at`: strictly increasing across all stores of this process."""
        global _last_stamp
        stamp = to_utc(value if value is not None else datetime.now(UTC), what="synced_at")
        assert stamp is not None
        with _stamp_lock:
            if _last_stamp is not None and stamp <= _last_stamp:
                stamp = _last_stamp + _ONE_US
            _last_stamp = stamp
        return stamp

    def _chunk_rows(self, table: sa.Table) -> int:
        return max(1, min(_MAX_CHUNK_ROWS, _MAX_BIND_PARAMS[self.dialect] // len(table.columns)))

    @staticmethod
    def _spec(table: str) -> TableSpec:
        try:
            return TABLES[table]
        except KeyError:
            raise ValueError(f"unknown entity table {table!r}; expected one of {sorted(TABLES)}") from None

    @staticmethod
    def _any_table(table: str) -> sa.Table:
        for t in WAREHOUSE_TABLES:
            if t.name == table:
                return t
        raise ValueError(f"unknown warehouse table {table!r}")

    def create_tables(self) -> None:
        """Create missing tables; safe when several processes start at once.

        The check-then-create runs under a lock (SQLite: BEGIN IMMEDIATE, DDL is transactional
        once pysqlite's BEGIN handling is off; PostgreSQL: a transaction-scoped advisory lock), so
        the loser of a start-up race finds the tables and creates nothing.
        """
        if not self._missing_tables():
            self._check_columns()
            return
        with self._tx(write=True) as conn:
            if self.dialect == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_CREATE_LOCK)))
            SQLModel.metadata.create_all(conn, tables=WAREHOUSE_TABLES, checkfirst=True)
        self._check_columns()

    def _missing_tables(self) -> list[str]:
        with self._tx(write=False) as conn:
            existing = set(sa.inspect(conn).get_table_names())
        return [t.name for t in WAREHOUSE_TABLES if t.name not in existing]

    def _check_columns(self) -> None:
        """Fail clearly on a table created by an older layout instead of with an SQL error later."""
        with self._tx(write=False) as conn:
            insp = sa.inspect(conn)
            for t in WAREHOUSE_TABLES:
                have = {c["name"] for c in insp.get_columns(t.name)}
                missing = [c.name for c in t.columns if c.name not in have]
                if missing:
                    raise RuntimeError(
                        f"table {t.name} in {self.safe_url} lacks column(s) {missing}; migrate or recreate it"
                    )

    def ping(self) -> None:
        with self._tx(write=False) as conn:
            conn.execute(sa.text("SELECT 1"))

    def _commit_with_sink(
        self,
        work: Callable[[Connection], tuple[BatchResult, list[Row]]],
        table: str,
        sink: Sink | None,
    ) -> BatchResult:
        """Run `work` in one write transaction, hand its written rows to `sink` before COMMIT.

        A PostgreSQL deadlock or serialization failure (overlapping runs upserting the same
        keys) rolls back the whole attempt, which is then simply re-run: `work` is idempotent.
        """
        for attempt in range(1, _ATTEMPTS + 1):
            sink_output: object = None
            try:
                with self._tx(write=True) as conn:
                    result, written = work(conn)
                    if sink is not None and written:
                        sink_output = sink(table, written)
                return result
            except exc.DBAPIError as e:
                if sink_output is not None:
                    _discard(sink_output)
                if attempt < _ATTEMPTS and getattr(e.orig, "sqlstate", None) in _RETRY_SQLSTATES:
                    continue
                raise
            except BaseException:
                # The sink succeeded but COMMIT (or something after the sink) failed: the files
                # would describe rows the table does not have.
                if sink_output is not None:
                    _discard(sink_output)
                raise
        raise AssertionError("unreachable")

    def _upsert_cursor(self, conn: Connection, cursor: CursorSpec, now: datetime) -> None:
        cloud_id, stream, value = cursor
        if not cloud_id or not stream:
            raise ValueError("cursor needs a cloud_id and a stream")
        if not isinstance(value, str):
            raise TypeError(f"cursor value must be str, got {type(value).__name__}")
        t = SyncStateTable
        ins = self._insert(t).values(cloud_id=cloud_id, stream=stream, cursor=value, updated_at=now)
        conn.execute(
            ins.on_conflict_do_update(
                index_elements=[t.c.cloud_id, t.c.stream],
                set_={"cursor": ins.excluded.cursor, "updated_at": ins.excluded.updated_at},
            )
        )

    # -- entity rows

    def write_batch(
        self,
        table: str,
        rows: list[Row],
        *,
        cursor: CursorSpec | None = None,
        sink: Sink | None = None,
        synced_at: datetime | None = None,
    ) -> BatchResult:
        """Upsert `rows` (and `cursor`) in one transaction; see the module docstring for the rule.

        Several versions of one key within `rows` are collapsed first (newest `updated` wins,
        the later one on ties; for unversioned tables the later one): PostgreSQL refuses to
        touch a row twice in one statement. Superseded duplicates count as `unchanged`.
        `synced_at` should be the wall-clock time of the write (default: now). `sink` is called
        with the written rows only when something was written; if it raises, nothing is kept.
        """
        spec = self._spec(table)
        t = spec.table
        normalized = [normalize_row(spec, r) for r in rows]
        latest: dict[tuple[Any, ...], Row] = {}
        for r in normalized:
            k = tuple(r[c] for c in spec.key)
            prev = latest.get(k)
            if prev is None or spec.version_column is None or r[spec.version_column] >= prev[spec.version_column]:
                latest[k] = r
        stamp = self._stamp(synced_at)
        for r in latest.values():
            r.update(is_deleted=False, deleted_at=None, synced_at=stamp)
        # Key order = row-lock order on PostgreSQL: overlapping writers then cannot deadlock.
        batch = sorted(latest.values(), key=lambda r: tuple(r[c] for c in spec.key))

        def work(conn: Connection) -> tuple[BatchResult, list[Row]]:
            res = BatchResult(unchanged=len(normalized) - len(batch))
            for chunk in _chunks(batch, self._chunk_rows(t)):
                ins_n, upd_n, written = self._upsert_chunk(conn, spec, chunk)
                res.inserted += ins_n
                res.updated += upd_n
                res.unchanged += len(chunk) - ins_n - upd_n
                res.rows.extend(written)
            if cursor is not None:
                self._upsert_cursor(conn, cursor, stamp)
            return res, res.rows

        return self._commit_with_sink(work, table, sink)

    def _upsert_stmt(self, spec: TableSpec) -> Any:
        """``INSERT .. ON CONFLICT (key) DO UPDATE .. WHERE <newer or changed> RETURNING *``."""
        t = spec.table
        # No .values(rows): executed with a list of rows, SQLAlchemy's "insertmanyvalues" batches
        # them into multi-row VALUES from one cached compilation (compiling 10^4 bind parameters
        # per call costs more than the database work).
        ins = self._insert(t)
        ex = ins.excluded
        changed = sa.or_(ex.content_hash != t.c.content_hash, t.c.is_deleted.is_(sa.true()))
        v = spec.version_column
        where = sa.or_(ex[v] > t.c[v], sa.and_(ex[v] == t.c[v], changed)) if v else changed
        set_: dict[str, Any] = {c.name: ex[c.name] for c in t.columns if c.name not in spec.key}
        set_.update(is_deleted=sa.false(), deleted_at=sa.null())
        returning: list[Any] = list(t.columns)
        if self.dialect == "postgresql":
            # xmax = 0 on the returned tuple <=> it was freshly inserted, not updated.
            returning.append(sa.literal_column("(xmax = 0)", sa.Boolean).label("_inserted"))
        keycols = [t.c[k] for k in spec.key]
        return ins.on_conflict_do_update(index_elements=keycols, set_=set_, where=where).returning(*returning)

    @staticmethod
    def _would_write(spec: TableSpec, new: Row, stored: Any) -> bool:
        """Python twin of the upsert's WHERE, used to skip sending rows that cannot change."""
        if stored is None:
            return True
        changed = new["content_hash"] != stored.content_hash or bool(stored.is_deleted)
        v = spec.version_column
        if v is None:
            return changed
        return bool(new[v] > stored.version or (new[v] == stored.version and changed))

    def _upsert_chunk(self, conn: Connection, spec: TableSpec, chunk: Sequence[Row]) -> tuple[int, int, list[Row]]:
        t = spec.table
        keycols = [t.c[k] for k in spec.key]
        version = t.c[spec.version_column] if spec.version_column else sa.null()
        # One SELECT per chunk of what is stored for these keys. It lets re-runs skip sending rows
        # that cannot change (the common case with overlapping windows), and on SQLite - where
        # BEGIN IMMEDIATE excludes other writers - it tells inserts from updates exactly. The
        # upsert's WHERE still decides, so a concurrent PostgreSQL writer cannot be overruled.
        by_cloud: dict[str, list[str]] = {}
        for r in chunk:
            by_cloud.setdefault(r["cloud_id"], []).append(r[spec.id_column])
        existing: dict[tuple[Any, ...], Any] = {}
        for cloud_id, ids in by_cloud.items():  # `cloud_id = ? AND id IN (..)`: a PK index range
            probe = sa.select(*keycols, version.label("version"), t.c.content_hash, t.c.is_deleted).where(
                t.c.cloud_id == cloud_id, t.c[spec.id_column].in_(ids)
            )
            existing.update((tuple(x[: len(keycols)]), x) for x in conn.execute(probe))
        todo = [r for r in chunk if self._would_write(spec, r, existing.get(tuple(r[k] for k in spec.key)))]
        inserted = updated = 0
        written: list[Row] = []
        if not todo:
            return inserted, updated, written
        for m in conn.execute(self._upsert_stmt(spec), todo).mappings():
            row = {c.name: m[c.name] for c in t.columns}
            if self.dialect == "postgresql":
                is_new = bool(m["_inserted"])
            else:
                is_new = tuple(row[k] for k in spec.key) not in existing
            inserted += is_new
            updated += not is_new
            written.append(row)
        return inserted, updated, written

    def soft_delete(
        self,
        table: str,
        cloud_id: str,
        keys: Iterable[str],
        *,
        deleted_at: datetime | None = None,
        cursor: CursorSpec | None = None,
        sink: Sink | None = None,
    ) -> BatchResult:
        """Mark rows deleted (key = the non-cloud_id key column); already deleted/absent: unchanged."""
        spec = self._spec(table)
        wanted = sorted({str(k) for k in keys})
        stamp = self._stamp()
        when = to_utc(deleted_at, what="deleted_at") or stamp

        def work(conn: Connection) -> tuple[BatchResult, list[Row]]:
            written = self._soft_delete_keys(conn, spec, cloud_id, wanted, when, stamp)
            if cursor is not None:
                self._upsert_cursor(conn, cursor, stamp)
            res = BatchResult(unchanged=len(wanted) - len(written), deleted=len(written), rows=written)
            return res, written

        return self._commit_with_sink(work, table, sink)

    def soft_delete_absent(
        self,
        table: str,
        cloud_id: str,
        present_keys: set[str],
        *,
        where: dict[str, Sequence[Any]] | None = None,
        deleted_at: datetime | None = None,
        cursor: CursorSpec | None = None,
        sink: Sink | None = None,
    ) -> BatchResult:
        """Soft-delete live rows of `cloud_id` matching `where` whose key is not in `present_keys`.

        This is the reconciliation step after a *complete* listing; `present_keys` must be the
        whole truth for the `where` scope (an empty set deletes the whole scope). An empty value
        list in `where` matches nothing, so a mistakenly empty scope deletes nothing.
        """
        spec = self._spec(table)
        present = {str(k) for k in present_keys}
        stamp = self._stamp()
        when = to_utc(deleted_at, what="deleted_at") or stamp

        def work(conn: Connection) -> tuple[BatchResult, list[Row]]:
            live = self._live_keys(conn, spec, cloud_id, where)
            gone = sorted(live - present)
            written = self._soft_delete_keys(conn, spec, cloud_id, gone, when, stamp)
            if cursor is not None:
                self._upsert_cursor(conn, cursor, stamp)
            res = BatchResult(unchanged=len(live) - len(written), deleted=len(written), rows=written)
            return res, written

        return self._commit_with_sink(work, table, sink)

    def _soft_delete_keys(
        self,
        conn: Connection,
        spec: TableSpec,
        cloud_id: str,
        keys: Sequence[str],
        when: datetime,
        stamp: datetime,
    ) -> list[Row]:
        t = spec.table
        idcol = t.c[spec.id_column]
        written: list[Row] = []
        for chunk in _chunks(keys, 5_000 if self.dialect == "postgresql" else 900):
            stmt = (
                sa.update(t)
                .where(t.c.cloud_id == cloud_id, idcol.in_(list(chunk)), t.c.is_deleted.is_(sa.false()))
                .values(is_deleted=True, deleted_at=when, synced_at=stamp)
                .returning(*t.columns)
            )
            written.extend(dict(m) for m in conn.execute(stmt).mappings())
        return written

    def _where(self, spec: TableSpec, where: dict[str, Sequence[Any]] | None) -> list[Any]:
        conds: list[Any] = []
        for col, values in (where or {}).items():
            if col not in spec.table.c:
                raise ValueError(f"{spec.name}: unknown column {col!r} in where")
            conds.append(spec.table.c[col].in_(list(values)))
        return conds

    def _live_keys(
        self, conn: Connection, spec: TableSpec, cloud_id: str, where: dict[str, Sequence[Any]] | None
    ) -> set[str]:
        t = spec.table
        stmt = sa.select(t.c[spec.id_column]).where(
            t.c.cloud_id == cloud_id, t.c.is_deleted.is_(sa.false()), *self._where(spec, where)
        )
        return set(conn.execute(stmt).scalars())

    def live_keys(self, table: str, cloud_id: str, where: dict[str, Sequence[Any]] | None = None) -> set[str]:
        spec = self._spec(table)
        with self._tx(write=False) as conn:
            return self._live_keys(conn, spec, cloud_id, where)

    def rows(self, table: str, cloud_id: str | None = None, *, include_deleted: bool = True) -> list[Row]:
        """All rows of any warehouse table as dicts, in key order (for checks, tests, the CLI)."""
        t = self._any_table(table)
        stmt = sa.select(t).order_by(*t.primary_key.columns)
        if cloud_id is not None and "cloud_id" in t.c:
            stmt = stmt.where(t.c.cloud_id == cloud_id)
        if not include_deleted and "is_deleted" in t.c:
            stmt = stmt.where(t.c.is_deleted.is_(sa.false()))
        with self._tx(write=False) as conn:
            return [dict(m) for m in conn.execute(stmt).mappings()]

    def iter_columns(
        self, table: str, columns: Sequence[str], *, include_deleted: bool = False, chunk_rows: int = 2000
    ) -> Iterator[Row]:
        """Only the named columns of every row, streamed in chunks: checks over 20k issues must not load
        every `raw`/`fields` document (gigabytes) the way `rows()` would."""
        t = self._any_table(table)
        stmt = sa.select(*(t.c[c] for c in columns))
        if not include_deleted and "is_deleted" in t.c:
            stmt = stmt.where(t.c.is_deleted.is_(sa.false()))
        with self._tx(write=False) as conn:
            result = conn.execution_options(yield_per=chunk_rows).execute(stmt)
            for mapping in result.mappings():
                yield dict(mapping)

    def count(self, table: str, cloud_id: str | None = None, *, include_deleted: bool = True) -> int:
        """Row count (for `dagster/row_count` and summaries) without loading the rows."""
        t = self._any_table(table)
        stmt = sa.select(sa.func.count()).select_from(t)
        if cloud_id is not None:
            stmt = stmt.where(t.c.cloud_id == cloud_id)
        if not include_deleted and "is_deleted" in t.c:
            stmt = stmt.where(t.c.is_deleted.is_(False))
        with self._tx(write=False) as conn:
            return int(conn.execute(stmt).scalar_one())

    def duplicate_keys(self, table: str) -> int:
        """Number of key values held by more than one row: 0 unless the primary key is broken."""
        t = self._any_table(table)
        keys = list(t.primary_key.columns)
        dup = sa.select(*keys).group_by(*keys).having(sa.func.count() > 1).subquery()
        with self._tx(write=False) as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(dup)).scalar_one())

    def scalar(self, sql: str, **params: Any) -> Any:
        with self._tx(write=False) as conn:
            return conn.execute(sa.text(sql), params).scalar()

    # -- cursors

    def get_cursor(self, cloud_id: str, stream: str) -> str | None:
        t = SyncStateTable
        with self._tx(write=False) as conn:
            return conn.execute(
                sa.select(t.c.cursor).where(t.c.cloud_id == cloud_id, t.c.stream == stream)
            ).scalar_one_or_none()

    def set_cursor(self, cloud_id: str, stream: str, value: str) -> None:
        with self._tx(write=True) as conn:
            self._upsert_cursor(conn, (cloud_id, stream, value), datetime.now(UTC))

    # -- OAuth grants

    _GRANT_REQUIRED = ("grant_id", "client_id", "refresh_token_enc")

    def _grant_values(self, row: Mapping[str, Any]) -> Row:
        t = GrantsTable
        unknown = set(row) - set(t.c.keys())
        if unknown:
            raise ValueError(f"jira_oauth_grants: unknown column(s) {sorted(unknown)}")
        for col in self._GRANT_REQUIRED:
            if not row.get(col):
                raise ValueError(f"jira_oauth_grants: row is missing required column {col!r}")
        values = dict(row)
        for c in t.columns:
            if isinstance(c.type, UTCDateTime) and c.name in values:
                values[c.name] = to_utc(values[c.name], what=f"jira_oauth_grants.{c.name}")
        return values

    def save_grant(self, row: dict[str, Any]) -> None:
        """Insert or replace a grant by grant_id (a stored created_at survives if none is given)."""
        now = datetime.now(UTC)
        values = self._grant_values(row)
        values.setdefault("refresh_count", 0)
        values.setdefault("status", "active")
        values.setdefault("scopes", [])
        values.setdefault("sites", [])
        values["updated_at"] = values.get("updated_at") or now
        has_created = values.get("created_at") is not None
        values["created_at"] = values.get("created_at") or now
        full = {c.name: values.get(c.name) for c in GrantsTable.columns}
        ins = self._insert(GrantsTable).values(full)
        set_ = {k: ins.excluded[k] for k in full if k != "grant_id" and (k != "created_at" or has_created)}
        with self._tx(write=True) as conn:
            conn.execute(ins.on_conflict_do_update(index_elements=[GrantsTable.c.grant_id], set_=set_))

    def get_grant(self, grant_id: str) -> Row | None:
        t = GrantsTable
        with self._tx(write=False) as conn:
            m = conn.execute(sa.select(t).where(t.c.grant_id == grant_id)).mappings().first()
        return dict(m) if m is not None else None

    def list_grants(self) -> list[Row]:
        t = GrantsTable
        with self._tx(write=False) as conn:
            return [dict(m) for m in conn.execute(sa.select(t).order_by(t.c.created_at, t.c.grant_id)).mappings()]

    def delete_grant(self, grant_id: str) -> None:
        with self._tx(write=True) as conn:
            conn.execute(sa.delete(GrantsTable).where(GrantsTable.c.grant_id == grant_id))

    @contextmanager
    def lock_grant(self, grant_id: str) -> Iterator[Row | None]:
        """Hold the grant row exclusively; yield it (re-read inside the lock) as a mutable dict.

        PostgreSQL: ``SELECT .. FOR UPDATE`` (other lockers of this grant wait; readers do not).
        SQLite: ``BEGIN IMMEDIATE`` write-locks the whole file; other writers wait up to
        `SQLITE_BUSY_TIMEOUT_S`. Do not call other write methods of this store while holding it
        (on SQLite that waits for yourself). If the dict was changed, the changes are written
        (``updated_at`` refreshed unless set explicitly) and committed on normal exit; an
        exception rolls everything back. Lockers of an absent grant get None.
        """
        t = GrantsTable
        with self._tx(write=True) as conn:
            stmt = sa.select(t).where(t.c.grant_id == grant_id)
            if self.dialect == "postgresql":
                # Same patience as SQLite's busy timeout instead of PostgreSQL's default of forever.
                conn.execute(sa.text(f"SET LOCAL lock_timeout = '{int(SQLITE_BUSY_TIMEOUT_S * 1000)}ms'"))
                stmt = stmt.with_for_update()
            m = conn.execute(stmt).mappings().first()
            if m is None:
                yield None
                return
            original = copy.deepcopy(dict(m))
            current = copy.deepcopy(original)
            yield current
            unknown = set(current) - set(original)
            if unknown:
                raise ValueError(f"jira_oauth_grants: unknown column(s) {sorted(unknown)}")
            if current["grant_id"] != grant_id:
                raise ValueError("jira_oauth_grants: grant_id cannot change under lock_grant")
            changes = {k: v for k, v in current.items() if v != original[k]}
            if changes:
                for k in changes:
                    if isinstance(t.c[k].type, UTCDateTime):
                        changes[k] = to_utc(changes[k], what=f"jira_oauth_grants.{k}")
                if "updated_at" not in changes:
                    changes["updated_at"] = datetime.now(UTC)
                conn.execute(sa.update(t).where(t.c.grant_id == grant_id).values(changes))

    # -- OAuth states

    def _purge_states(self, conn: Connection, now: datetime) -> None:
        # Keep recently expired states for a while so a late callback hears "expired", not "unknown".
        cutoff = now - OAUTH_STATE_PURGE_AFTER
        conn.execute(sa.delete(OAuthStatesTable).where(OAuthStatesTable.c.expires_at < cutoff))

    def put_oauth_state(self, state_hash: str, expires_at: datetime, payload: dict[str, Any] | None = None) -> None:
        now = datetime.now(UTC)
        with self._tx(write=True) as conn:
            self._purge_states(conn, now)
            conn.execute(
                sa.insert(OAuthStatesTable).values(
                    state_hash=state_hash,
                    created_at=now,
                    expires_at=to_utc(expires_at, what="expires_at"),
                    payload=payload,
                )
            )

    def consume_oauth_state(self, state_hash: str) -> Row | None:
        """Single use: DELETE .. RETURNING, so of concurrent callbacks exactly one gets the row.

        Expired rows are still returned (the caller checks ``expires_at`` and says "expired"
        rather than "unknown"); states expired longer than `OAUTH_STATE_PURGE_AFTER` are purged.
        """
        t = OAuthStatesTable
        with self._tx(write=True) as conn:
            m = conn.execute(sa.delete(t).where(t.c.state_hash == state_hash).returning(*t.columns)).mappings().first()
            self._purge_states(conn, datetime.now(UTC))
        return dict(m) if m is not None else None
