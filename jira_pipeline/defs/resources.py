"""Dagster resources: the OAuth client + grant store, and authenticated Jira clients per site.

Secrets arrive only as `EnvVar` (the UI shows the variable's name, never its value). Fields left
unset fall back to the environment at *run* time with CONTRACT §1's defaults, so the code location
loads with nothing configured and a run says exactly which variable is missing.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from dagster import ConfigurableResource, InitResourceContext
from pydantic import PrivateAttr

from jira_pipeline.atlassian.client import JiraClient
from jira_pipeline.atlassian.oauth import OAuthConfig
from jira_pipeline.crypto import resolve_cipher
from jira_pipeline.extract import SiteSync
from jira_pipeline.grants import GrantManager, SiteRef
from jira_pipeline.settings import Settings, parse_cloud_ids
from jira_pipeline.warehouse.parquet import ParquetSink
from jira_pipeline.warehouse.store import Warehouse


class WarehouseResource(ConfigurableResource):
    """The table store (`JIRA_WAREHOUSE_URL`) and the Parquet root (`JIRA_PARQUET_DIR`)."""

    url: str | None = None
    parquet_dir: str | None = None

    _warehouse: Warehouse | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        self._warehouse = None

    @property
    def settings(self) -> Settings:
        base = Settings.from_env()
        return replace(
            base, warehouse_url=self.url or base.warehouse_url, parquet_dir=self.parquet_dir or base.parquet_dir
        )

    def warehouse(self) -> Warehouse:
        if self._warehouse is None:
            self._warehouse = Warehouse(self.settings.warehouse_url)
        return self._warehouse

    def sink(self) -> ParquetSink:
        return ParquetSink(self.settings.parquet_dir)


class JiraOAuthResource(ConfigurableResource):
    """OAuth client config + the encrypted grant store; refreshes tokens single-flight."""

    client_id: str
    client_secret: str
    redirect_uri: str | None = None
    auth_url: str | None = None
    api_url: str | None = None
    token_encryption_key: str | None = None
    store: WarehouseResource

    _grants: GrantManager | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        self._grants = None

    def resolved(self) -> Settings:
        base = self.store.settings
        return replace(
            base,
            client_id=self.client_id,
            client_secret=self.client_secret,
            redirect_uri=self.redirect_uri or base.redirect_uri,
            auth_url=(self.auth_url or base.auth_url).rstrip("/"),
            api_url=(self.api_url or base.api_url).rstrip("/"),
            token_encryption_key=self.token_encryption_key or base.token_encryption_key,
        )

    def oauth_config(self) -> OAuthConfig:
        s = self.resolved()
        s.require_client()
        return OAuthConfig(
            client_id=s.client_id,
            client_secret=s.client_secret,
            redirect_uri=s.redirect_uri,
            auth_url=s.auth_url,
            api_url=s.api_url,
        )

    def grants(self) -> GrantManager:
        if self._grants is None:
            s = self.resolved()
            self._grants = GrantManager(
                self.store.warehouse(), self.oauth_config(), resolve_cipher(s.warehouse_url, s.token_encryption_key)
            )
        return self._grants


class JiraResource(ConfigurableResource):
    """Hands assets an authenticated `JiraClient` per site (`{api}/ex/jira/{cloudId}/rest/api/3`)."""

    oauth: JiraOAuthResource
    cloud_ids: str | None = None
    max_concurrency: int = 8
    max_retries: int = 8

    def sites(self) -> list[SiteRef]:
        selected = (
            parse_cloud_ids(self.cloud_ids) if self.cloud_ids is not None else self.oauth.store.settings.cloud_ids
        )
        return self.oauth.grants().sites(selected)

    def client(self, site: SiteRef, logger: logging.Logger | None = None) -> JiraClient:
        grants = self.oauth.grants()
        return JiraClient(
            grants.oauth.api_url,
            site.cloud_id,
            grants.provider(site.grant_id),
            max_concurrency=self.max_concurrency,
            max_retries=self.max_retries,
            logger=logger,
        )

    def site_syncs(self, logger: logging.Logger) -> list[SiteSync]:
        warehouse = self.oauth.store.warehouse()
        sink = self.oauth.store.sink()
        return [
            SiteSync(
                cloud_id=site.cloud_id,
                site_url=site.url,
                client=self.client(site, logger),
                warehouse=warehouse,
                sink=sink,
                log=logger,
                max_workers=self.max_concurrency,
                batch_rows=self.oauth.store.settings.batch_rows,
            )
            for site in self.sites()
        ]
