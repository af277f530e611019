"""Single-flight OAuth token refresh, shared by the Dagster resources, the connector app and the CLI.

Atlassian rotates the refresh token on every use. The old one keeps working for about ten minutes;
presenting it after that revokes the whole grant and the user must consent again. Dagster runs every
step in its own process and runs overlap, so two processes must never refresh with the same token
outside that window. The rule here:

1. Lock the grant row (`SELECT ... FOR UPDATE` on Postgres, `BEGIN IMMEDIATE` on SQLite).
2. Re-read it inside the lock: another process may have refreshed while we waited.
3. Refresh only if the access token expires within the margin (or Jira just rejected it).
4. Persist the rotated pair in the same transaction, then unlock.

A refresh whose outcome is unknown (read timeout, 5xx, dropped connection) is never replayed: the
server may already have rotated the token. We store nothing, re-read the store, and report clearly.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from jira_pipeline.atlassian.oauth import (
    AmbiguousRefresh,
    OAuthConfig,
    ReconsentRequired,
    TokenSet,
    refresh_access_token,
)
from jira_pipeline.crypto import TokenCipher
from jira_pipeline.warehouse.store import Warehouse

log = logging.getLogger(__name__)

#: Refresh when fewer than this many seconds of access-token life remain (capped at a quarter of the
#: token's lifetime, see `GrantManager.fresh_until`).
DEFAULT_MARGIN = timedelta(minutes=5)
#: HTTP timeout of a refresh. It runs while the grant row is locked, so it must stay well below the
#: store's lock wait (`SQLITE_BUSY_TIMEOUT_S`, 60 s): waiters must outlast the holder, not give up first.
DEFAULT_REFRESH_TIMEOUT = 30.0
#: How long a `GrantTokenProvider` trusts its cached token before re-reading the store.
PROVIDER_CACHE = timedelta(seconds=30)
#: Atlassian expires refresh tokens of a grant unused for 90 days and every grant after 365 days.
INACTIVITY_EXPIRY = timedelta(days=90)
ABSOLUTE_EXPIRY = timedelta(days=365)
ABSOLUTE_EXPIRY_WARNING = timedelta(days=30)

RECONNECT_HINT = "Run `jira-pipeline connect` (or open /api/v1/auth/jira/connector/add) to consent again."


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class SiteRef:
    """A Jira site a grant can reach, as accessible-resources lists it."""

    cloud_id: str
    name: str
    url: str
    grant_id: str


class GrantManager:
    """Hands out valid access tokens for stored grants; the only code that refreshes them."""

    def __repr__(self) -> str:
        return f"GrantManager({self.warehouse!r}, client_id={self.oauth.client_id!r})"

    def __init__(
        self,
        warehouse: Warehouse,
        oauth: OAuthConfig,
        cipher: TokenCipher,
        *,
        margin: timedelta = DEFAULT_MARGIN,
        session: requests.Session | None = None,
        refresh_timeout: float = DEFAULT_REFRESH_TIMEOUT,
    ) -> None:
        self.warehouse = warehouse
        self.oauth = oauth
        self.cipher = cipher
        self.margin = margin
        self.session = session
        self.refresh_timeout = refresh_timeout
        #: refreshes this object performed at the token endpoint (for measurements)
        self.refresh_calls = 0

    # ---------------------------------------------------------------- storing a new grant
    def store_grant(self, grant_id: str, tokens: TokenSet, sites: Iterable[dict[str, Any]]) -> dict[str, Any]:
        """Store (or replace) a grant right after consent: tokens encrypted, every reachable site kept."""
        if not tokens.refresh_token:
            raise ReconsentRequired(
                "Atlassian returned no refresh token: the app must request the offline_access scope. " + RECONNECT_HINT
            )
        now = utcnow()
        row = {
            "grant_id": grant_id,
            "client_id": self.oauth.client_id,
            "account_id": grant_id,
            "refresh_token_enc": self.cipher.encrypt(tokens.refresh_token),
            "access_token_enc": self.cipher.encrypt(tokens.access_token),
            "access_expires_at": tokens.expires_at,
            "scopes": list(tokens.scopes),
            "sites": [{"id": s["id"], "name": s.get("name", ""), "url": s.get("url", "")} for s in sites],
            "created_at": now,
            "refreshed_at": None,
            "refresh_count": 0,
            "status": "active",
            "status_reason": None,
            "updated_at": now,
        }
        self.warehouse.save_grant(row)
        return row

    # ---------------------------------------------------------------- sites
    def sites(self, cloud_ids: Iterable[str] = ()) -> list[SiteRef]:
        """Sites to sync: those named in JIRA_CLOUD_IDS (each must be reachable), else every reachable one.

        When several grants reach a site, the most recently refreshed active grant serves it.
        """
        best: dict[str, tuple[datetime, SiteRef]] = {}
        for grant in self.warehouse.list_grants():
            if grant.get("status") != "active":
                continue
            stamp = grant.get("refreshed_at") or grant.get("created_at") or datetime.min.replace(tzinfo=UTC)
            for site in grant.get("sites") or []:
                ref = SiteRef(site["id"], site.get("name", ""), site.get("url", ""), grant["grant_id"])
                if site["id"] not in best or stamp > best[site["id"]][0]:
                    best[site["id"]] = (stamp, ref)
        wanted = list(cloud_ids)
        if not wanted:
            if not best:
                raise ReconsentRequired("No Jira site is connected yet. " + RECONNECT_HINT)
            return [ref for _, ref in sorted(best.values(), key=lambda item: item[1].name)]
        missing = [cid for cid in wanted if cid not in best]
        if missing:
            raise ReconsentRequired(
                f"JIRA_CLOUD_IDS names site(s) {', '.join(missing)} that no active grant can reach "
                f"(connected: {', '.join(sorted(best)) or 'none'}). Fix JIRA_CLOUD_IDS, or connect a user who can "
                "access those sites: " + RECONNECT_HINT
            )
        return [best[cid][1] for cid in wanted]

    # ---------------------------------------------------------------- tokens
    def access_token(self, grant_id: str) -> str:
        """A valid access token; refreshes (single-flight) only when it is about to expire."""
        return self.access_token_until(grant_id)[0]

    def access_token_until(self, grant_id: str) -> tuple[str, datetime]:
        """A valid access token and the instant until which it may be handed out without a refresh.

        The common case is one unlocked read: the lock is only taken when the stored token is stale,
        and `refresh` re-reads under it, so of many processes finding the same stale token exactly one
        calls the token endpoint.
        """
        row = self.warehouse.get_grant(grant_id)
        self._check_usable(grant_id, row)
        assert row is not None
        until = self.fresh_until(row)
        if row.get("access_token_enc") and until is not None and utcnow() < until:
            return self.cipher.decrypt(row["access_token_enc"]), until
        return self._refresh(grant_id, force=False, rejected=None)

    def refresh(self, grant_id: str, *, force: bool = False, rejected: str | None = None) -> str:
        """Refresh under the row lock. `force` refreshes even a token that looks fresh (Jira said 401),
        unless another process already replaced the `rejected` token."""
        return self._refresh(grant_id, force=force, rejected=rejected)[0]

    def _refresh(self, grant_id: str, *, force: bool, rejected: str | None) -> tuple[str, datetime]:
        failure: Exception | None = None
        result: tuple[str, datetime] | None = None
        with self.warehouse.lock_grant(grant_id) as row:
            # Everything below reads `row` as it is *now*, inside the lock: another process may have
            # rotated the pair while we waited, and its refresh token is the only one still valid.
            self._check_usable(grant_id, row)
            assert row is not None
            current = self.cipher.decrypt(row["access_token_enc"]) if row.get("access_token_enc") else None
            until = self.fresh_until(row)
            fresh = current is not None and until is not None and utcnow() < until
            someone_else_refreshed = rejected is not None and current != rejected
            if fresh and (not force or someone_else_refreshed):
                assert current is not None and until is not None
                return current, until
            try:
                self.refresh_calls += 1
                tokens = refresh_access_token(
                    self.oauth,
                    self.cipher.decrypt(row["refresh_token_enc"]),
                    session=self.session,
                    timeout=self.refresh_timeout,
                )
            except ReconsentRequired as exc:
                # Persist the revocation (commit, don't roll back) so every later run fails fast with the remedy.
                now = utcnow()
                detail = exc.error or "invalid_grant"
                if exc.error_description:
                    detail += f": {exc.error_description}"
                row["status"] = "revoked"
                row["status_reason"] = f"Atlassian refused the refresh on {now:%Y-%m-%d %H:%M} UTC ({detail})"[:300]
                row["updated_at"] = now
                failure = exc
            except AmbiguousRefresh as exc:
                failure = exc
            else:
                now = utcnow()
                row["access_token_enc"] = self.cipher.encrypt(tokens.access_token)
                if tokens.refresh_token:  # Atlassian may omit it: then the old one stays valid
                    row["refresh_token_enc"] = self.cipher.encrypt(tokens.refresh_token)
                row["access_expires_at"] = tokens.expires_at
                if tokens.scopes:
                    row["scopes"] = list(tokens.scopes)
                row["refreshed_at"] = now
                row["refresh_count"] = int(row.get("refresh_count") or 0) + 1
                row["updated_at"] = now
                result = (tokens.access_token, self.fresh_until(row) or tokens.expires_at)
        if isinstance(failure, AmbiguousRefresh):
            # Never replay: re-read what the store holds now and say what happened.
            after = self.warehouse.get_grant(grant_id)
            self._check_usable(grant_id, after)
            raise AmbiguousRefresh(
                f"Refreshing the Atlassian token for grant {grant_id} got no definite answer ({failure}). The token "
                "may have rotated on Atlassian's side, so it was not retried; the stored refresh token stays valid "
                "for Atlassian's ~10-minute leeway and the next run refreshes again. If this persists, "
                + RECONNECT_HINT,
                status=getattr(failure, "status", None),
            ) from None
        if failure is not None:
            log.warning(
                "The Atlassian grant %s is no longer valid; it was marked revoked. %s", grant_id, RECONNECT_HINT
            )
            raise failure
        assert result is not None
        log.info("Refreshed the Atlassian access token for grant %s", grant_id)
        return result

    def refresh_all(self) -> list[dict[str, Any]]:
        """Refresh every active grant (the keep-alive schedule), so none reaches the 90-day inactivity expiry.

        A grant already marked revoked is reported with the remedy instead of being sent to Atlassian
        again: its refresh token is dead, and presenting it would only repeat the refusal.
        """
        results = []
        for grant in self.warehouse.list_grants():
            try:
                self._check_usable(grant["grant_id"], grant)
                self.refresh(grant["grant_id"], force=True)
                results.append({"grant_id": grant["grant_id"], "ok": True, "error": None})
            except Exception as exc:
                results.append({"grant_id": grant["grant_id"], "ok": False, "error": str(exc)})
        return results

    def provider(self, grant_id: str) -> GrantTokenProvider:
        return GrantTokenProvider(self, grant_id)

    # ---------------------------------------------------------------- helpers
    def fresh_until(self, row: dict[str, Any]) -> datetime | None:
        """Until when the stored access token may be handed out: its expiry minus the margin.

        The margin is `self.margin` (5 min) but at most a quarter of the token's lifetime, so a short
        token (a simulator at 2 s, an authorization server with a short policy) is still used for most
        of its life instead of being refreshed on every call. The lifetime is measured from the
        refresh (or consent) that issued it; an expiry already before that (forced stale) gets the
        full margin.
        """
        expires = row.get("access_expires_at")
        if expires is None:
            return None
        margin = self.margin
        issued = row.get("refreshed_at") or row.get("created_at")
        if issued is not None and expires > issued:
            margin = min(margin, (expires - issued) / 4)
        return expires - margin

    @staticmethod
    def _check_usable(grant_id: str, row: dict[str, Any] | None) -> None:
        if row is None:
            raise ReconsentRequired(f"No stored Atlassian grant {grant_id!r}. " + RECONNECT_HINT)
        if row.get("status") != "active":
            reason = row.get("status_reason") or "revoked"
            raise ReconsentRequired(
                f"The Atlassian grant {grant_id} was revoked or expired ({reason}). " + RECONNECT_HINT
            )


class GrantTokenProvider:
    """The `TokenProvider` a `JiraClient` uses: a fresh token per request, one forced refresh on 401.

    Thread-safe: the worker threads of one client share it. The cached token is trusted for at most
    `PROVIDER_CACHE` and never past its own refresh point, so another process's rotation is seen soon
    and an expiring token is never handed out from the cache.
    """

    def __init__(self, manager: GrantManager, grant_id: str) -> None:
        self._manager = manager
        self._grant_id = grant_id
        self._lock = threading.Lock()
        self._cached: str | None = None
        self._cached_until: datetime | None = None

    def __repr__(self) -> str:
        return f"GrantTokenProvider(grant_id={self._grant_id!r})"

    def _valid_cache(self) -> str | None:
        if self._cached is not None and self._cached_until is not None and utcnow() < self._cached_until:
            return self._cached
        return None

    def _remember(self, token: str, until: datetime) -> str:
        self._cached = token
        self._cached_until = min(utcnow() + PROVIDER_CACHE, until)
        return token

    def access_token(self) -> str:
        with self._lock:
            cached = self._valid_cache()
            if cached is not None:
                return cached
            return self._remember(*self._manager.access_token_until(self._grant_id))

    def refresh_after_401(self, rejected: str) -> str:
        with self._lock:
            cached = self._valid_cache()
            if cached is not None and cached != rejected:
                return cached  # another thread of this client already replaced the rejected token
            return self._remember(*self._manager._refresh(self._grant_id, force=True, rejected=rejected))


def grant_health(row: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """Ages and expiry horizons of a grant, for `status` and the keep-alive warning. No secrets."""
    now = now or utcnow()
    created = row.get("created_at") or now
    last_used = row.get("refreshed_at") or created
    absolute_expiry = created + ABSOLUTE_EXPIRY
    return {
        "grant_id": row["grant_id"],
        "status": row.get("status"),
        "sites": [s.get("name") or s.get("id") for s in row.get("sites") or []],
        "scopes": list(row.get("scopes") or []),
        "access_expires_at": row.get("access_expires_at"),
        "grant_age_days": (now - created).days,
        "inactivity_expiry_at": last_used + INACTIVITY_EXPIRY,
        "absolute_expiry_at": absolute_expiry,
        "absolute_expiry_soon": absolute_expiry - now <= ABSOLUTE_EXPIRY_WARNING,
    }
