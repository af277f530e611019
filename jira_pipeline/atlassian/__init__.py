"""The Atlassian side of the pipeline: OAuth 2.0 (3LO) and the Jira Cloud REST v3 client.

Speaks HTTP only; knows nothing of Dagster, SQL or the warehouse (never import them here).
`adf` (Atlassian Document Format -> Markdown) lives beside these modules.
"""

from .client import ClientStats, JiraApiError, JiraClient, Page, StaticTokenProvider, TokenProvider
from .errors import AmbiguousRefresh, AtlassianError, InvalidClient, OAuthError, ReconsentRequired
from .oauth import (
    DEFAULT_SCOPES,
    OAuthConfig,
    TokenSet,
    accessible_resources,
    authorization_url,
    exchange_code,
    refresh_access_token,
)

__all__ = [
    "DEFAULT_SCOPES",
    "AmbiguousRefresh",
    "AtlassianError",
    "ClientStats",
    "InvalidClient",
    "JiraApiError",
    "JiraClient",
    "OAuthConfig",
    "OAuthError",
    "Page",
    "ReconsentRequired",
    "StaticTokenProvider",
    "TokenProvider",
    "TokenSet",
    "accessible_resources",
    "authorization_url",
    "exchange_code",
    "refresh_access_token",
]
