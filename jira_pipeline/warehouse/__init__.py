"""Storage layer: the table store (SQLite or PostgreSQL) and the Parquet datasets.

Knows nothing of HTTP, Atlassian or Dagster; the Dagster assets and the grant logic call in here.
"""

from .parquet import ParquetSink
from .store import SQLITE_BUSY_TIMEOUT_S, BatchResult, Warehouse, normalize_row, to_utc
from .tables import BATCH_ID_COLUMN, BOOKKEEPING_COLUMNS, TABLES, WAREHOUSE_TABLES, TableSpec, UTCDateTime

__all__ = [
    "BATCH_ID_COLUMN",
    "BOOKKEEPING_COLUMNS",
    "SQLITE_BUSY_TIMEOUT_S",
    "TABLES",
    "WAREHOUSE_TABLES",
    "BatchResult",
    "ParquetSink",
    "TableSpec",
    "UTCDateTime",
    "Warehouse",
    "normalize_row",
    "to_utc",
]
