"""Parquet datasets: every write is a new immutable file holding one batch of row versions.

Layout (hive-partitioned; ``cloud_id`` is carried by the path, not stored in the file)::

    {root}/{table}/cloud_id={cloud_id}/part-{YYYYmmddTHHMMSS}-{batch_id}.parquet

Current state of a table with DuckDB, one line (``id`` is the key column; ``account_id`` for
``jira_users``)::

    SELECT * FROM read_parquet('data/parquet/jira_issues/**/*.parquet', hive_partitioning=true) QUALIFY row_number() OVER (PARTITION BY cloud_id, id ORDER BY synced_at DESC) = 1

Soft-deleted keys are part of the current state (``is_deleted`` true). To get live rows, filter
*outside* that query (``SELECT * FROM (...) WHERE NOT is_deleted``): a ``WHERE`` inside runs before
``QUALIFY`` and would resurrect the last live version of a deleted row.

Why files are never rewritten: the table store is the merge point; Parquet is an append-only log
of the versions the store accepted, written by `Warehouse.write_batch(..., sink=ParquetSink)`
before the store commits. So "latest version per key by ``synced_at``" equals the store's row
(the store makes ``synced_at`` strictly increase per write). Files are written to a dot-named temp
file in the target directory (ignored by pyarrow and by the ``*.parquet`` glob), fsynced, then
renamed into place, so readers never see half a file. The Arrow schema comes from
`tables.TABLES` and is identical for every batch, even one whose optional columns are all null,
so readers never meet a schema conflict.

Known limit: the sink runs before COMMIT, and the store deletes the batch's files if COMMIT then
fails; only a hard crash between the rename and COMMIT can leave a file of versions the table
never got (the key's next write supersedes it).
"""  # noqa: E501

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

if TYPE_CHECKING:  # pyarrow.dataset drags in pandas (~0.5 s); only readers pay for it
    import pyarrow.dataset as ds

from .store import to_utc
from .tables import BATCH_ID_COLUMN, TABLES, TableSpec

_SAFE_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def _json_text(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _fsync_dir(path: Path) -> None:
    """Make a rename/creation durable; a no-op where directories cannot be opened (Windows)."""
    flag = getattr(os, "O_DIRECTORY", None)
    if flag is None:
        return
    fd = os.open(path, os.O_RDONLY | flag)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ParquetSink:
    """Writes row versions of the warehouse tables as hive-partitioned Parquet batch files."""

    def __init__(self, root: str | Path, *, compression: str = "zstd") -> None:
        self.root = Path(root)
        self.compression = compression

    def __repr__(self) -> str:
        return f"ParquetSink({str(self.root)!r})"

    @staticmethod
    def _spec(table: str) -> TableSpec:
        try:
            return TABLES[table]
        except KeyError:
            raise ValueError(f"unknown entity table {table!r}; expected one of {sorted(TABLES)}") from None

    def dataset_path(self, table: str) -> Path:
        return self.root / self._spec(table).name

    def dataset_uri(self, table: str) -> str:
        """``file://`` URI of the table's dataset directory (for ``dagster/uri`` metadata)."""
        return self.dataset_path(table).resolve().as_uri()

    def __call__(self, table: str, rows: list[dict[str, Any]]) -> list[Path]:
        return self.write(table, rows)

    def write(self, table: str, rows: list[dict[str, Any]], *, batch_id: str | None = None) -> list[Path]:
        """Write `rows` (full row versions incl. ``cloud_id`` and ``synced_at``) as one file per site.

        Returns the new files. If any file of the call fails, the ones already written by this
        call are removed again, so a failed batch leaves nothing behind.
        """
        spec = self._spec(table)
        if not rows:
            return []
        batch_id = batch_id or uuid.uuid4().hex
        if not _SAFE_SEGMENT.match(batch_id):
            raise ValueError("batch_id must match [A-Za-z0-9][A-Za-z0-9._-]* (it becomes part of a file name)")
        groups: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            cloud_id = r.get("cloud_id")
            if not isinstance(cloud_id, str) or not _SAFE_SEGMENT.match(cloud_id):
                raise ValueError(f"{table}: row without a usable cloud_id (needed for the partition path)")
            groups.setdefault(cloud_id, []).append(r)
        written: list[Path] = []
        try:
            for cloud_id in sorted(groups):
                arrow = self.to_arrow(spec, groups[cloud_id], batch_id)
                written.append(self._write_file(spec, cloud_id, arrow, batch_id))
        except BaseException:
            for p in written:
                p.unlink(missing_ok=True)
            raise
        return written

    @staticmethod
    def to_arrow(spec: TableSpec, rows: Sequence[dict[str, Any]], batch_id: str) -> pa.Table:
        """Rows -> Arrow table with exactly ``spec.arrow_schema`` (no inference, ever)."""
        arrays: list[pa.Array] = []
        for f in spec.arrow_schema:
            name = f.name
            kind = spec.column_types.get(name)
            if name == BATCH_ID_COLUMN:
                values: list[Any] = [batch_id] * len(rows)
            elif kind == "json":
                values = [_json_text(r.get(name)) for r in rows]
            elif kind == "timestamp":
                values = [to_utc(r.get(name), what=f"{spec.name}.{name}") for r in rows]
            else:
                values = [r.get(name) for r in rows]
            arr = pa.array(values, type=f.type)
            if not f.nullable and arr.null_count:
                raise ValueError(f"{spec.name}: column {name!r} is required in Parquet rows")
            arrays.append(arr)
        return pa.Table.from_arrays(arrays, schema=spec.arrow_schema)

    def _write_file(self, spec: TableSpec, cloud_id: str, arrow: pa.Table, batch_id: str) -> Path:
        table_dir = self.root / spec.name
        part_dir = table_dir / f"cloud_id={cloud_id}"
        created = not part_dir.exists()
        part_dir.mkdir(parents=True, exist_ok=True)
        stem = f"part-{datetime.now(UTC):%Y%m%dT%H%M%S}-{batch_id}"
        final = part_dir / f"{stem}.parquet"
        n = 1
        while final.exists():  # same caller batch_id within one second: never overwrite a batch
            final = part_dir / f"{stem}-{n}.parquet"
            n += 1
        tmp = part_dir / f".{final.name}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            with open(tmp, "wb") as fh:
                pq.write_table(arrow, fh, compression=self.compression)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(part_dir)
        if created:
            _fsync_dir(table_dir)
        return final

    def dataset(self, table: str) -> ds.Dataset:
        """The table's dataset with the explicit schema (``cloud_id`` from the hive path, as string)."""
        import pyarrow.dataset as ds

        spec = self._spec(table)
        partitioning = ds.partitioning(pa.schema([pa.field("cloud_id", pa.string())]), flavor="hive")
        return ds.dataset(
            self.dataset_path(table), format="parquet", schema=spec.dataset_schema, partitioning=partitioning
        )

    def read_current(self, table: str) -> pa.Table:
        """Latest version of each key by ``synced_at`` across all files (deleted rows included)."""
        import pyarrow.compute as pc

        spec = self._spec(table)
        if not self.dataset_path(table).exists():
            return spec.dataset_schema.empty_table()
        t = self.dataset(table).to_table()
        n = t.num_rows
        if n <= 1:
            return t
        t = t.sort_by([(k, "ascending") for k in spec.key] + [("synced_at", "ascending")])
        last_of_key: Any = None  # row i is the last of its key when the key changes at i+1
        for k in spec.key:
            ne = pc.not_equal(t[k].slice(0, n - 1), t[k].slice(1))
            last_of_key = ne if last_of_key is None else pc.or_(last_of_key, ne)
        mask = pa.chunked_array([*last_of_key.chunks, pa.array([True])], type=pa.bool_())
        return t.filter(mask)
