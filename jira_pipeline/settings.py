"""Configuration from the environment (CONTRACT §1), read at call time, never at import time.

The Dagster resources take the same values through `EnvVar`; the CLI and the connector app, which
run outside Dagster, read them here. Defaults are the contract's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date

DEFAULT_REDIRECT_URI = "http://localhost:8000/api/v1/auth/jira/connector/callback"
DEFAULT_AUTH_URL = "https://auth.atlassian.com"
DEFAULT_API_URL = "https://api.atlassian.com"
DEFAULT_WAREHOUSE_URL = "sqlite:///data/warehouse.db"
DEFAULT_PARQUET_DIR = "data/parquet"
DEFAULT_START_DATE = "2015-01-01"


class ConfigError(Exception):
    """Wrong or missing configuration; the message names the variable to fix."""


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


def _positive_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise ConfigError(f"{name}={raw!r} must be a positive whole number")
    return value


def parse_cloud_ids(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


def parse_start_date(value: str | None) -> date:
    raw = (value or "").strip() or DEFAULT_START_DATE
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ConfigError(f"JIRA_START_DATE={raw!r} is not a date; use YYYY-MM-DD, e.g. 2015-01-01") from None


@dataclass(frozen=True)
class Settings:
    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    redirect_uri: str = DEFAULT_REDIRECT_URI
    auth_url: str = DEFAULT_AUTH_URL
    api_url: str = DEFAULT_API_URL
    cloud_ids: tuple[str, ...] = ()
    warehouse_url: str = DEFAULT_WAREHOUSE_URL
    parquet_dir: str = DEFAULT_PARQUET_DIR
    token_encryption_key: str = field(default="", repr=False)
    start_date: date = date(2015, 1, 1)
    #: rows per transaction and per Parquet file (JIRA_BATCH_ROWS): memory vs. file count
    batch_rows: int = 500

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            client_id=_env("ATLASSIAN_CLIENT_ID", ""),
            client_secret=_env("ATLASSIAN_CLIENT_SECRET", ""),
            redirect_uri=_env("JIRA_REDIRECT_URI", DEFAULT_REDIRECT_URI),
            auth_url=_env("ATLASSIAN_AUTH_URL", DEFAULT_AUTH_URL).rstrip("/"),
            api_url=_env("ATLASSIAN_API_URL", DEFAULT_API_URL).rstrip("/"),
            cloud_ids=parse_cloud_ids(os.environ.get("JIRA_CLOUD_IDS")),
            warehouse_url=_env("JIRA_WAREHOUSE_URL", DEFAULT_WAREHOUSE_URL),
            parquet_dir=_env("JIRA_PARQUET_DIR", DEFAULT_PARQUET_DIR),
            token_encryption_key=_env("JIRA_TOKEN_ENCRYPTION_KEY", ""),
            start_date=parse_start_date(os.environ.get("JIRA_START_DATE")),
            batch_rows=_positive_int("JIRA_BATCH_ROWS", 500),
        )

    def require_client(self) -> None:
        missing = [
            name
            for name, value in (
                ("ATLASSIAN_CLIENT_ID", self.client_id),
                ("ATLASSIAN_CLIENT_SECRET", self.client_secret),
            )
            if not value
        ]
        if missing:
            raise ConfigError(
                f"{' and '.join(missing)} not set: copy them from your app's Settings page in the "
                "Atlassian developer console into .env (see README, 'Production')."
            )
