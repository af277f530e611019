"""Configuration of the simulator and the public description of a simulated site."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_REDIRECT_URI = "http://localhost:8000/api/v1/auth/jira/connector/callback"


@dataclass(frozen=True)
class Site:
    """One simulated Jira Cloud site, as `accessible-resources` names it.

    `url` is the *site* host (``https://<name>.atlassian.net``). Nothing listens there: it only
    appears in browse links and in the absolute ``nextPage`` links of the worklog feeds, exactly
    like real Jira, so a client has to rebuild those links on the gateway.
    """

    cloud_id: str
    name: str
    url: str
    avatar_url: str = "https://site-admin-avatar-cdn.prod.public.atl-paas.net/avatars/240/rocket.png"


@dataclass
class SimConfig:
    """Knobs of a simulator instance; every size is per site.

    Defaults match Atlassian Cloud where Atlassian documents a number (1 h access tokens, 10 min
    refresh-token leeway, 5000 ids / 100 bodies per search page, 1000 worklog ids per feed page).
    """

    seed: int = 1
    sites: int = 1
    projects: int = 4
    users: int = 40
    issues: int = 300
    worklogs: int = 900
    #: time zone of the searching user: JQL date literals are read in it and timestamps rendered in it
    user_timezone: str = "UTC"
    access_token_ttl: int = 3600
    refresh_leeway: int = 600
    client_id: str = "sim-client-id"
    client_secret: str = "sim-client-secret"
    redirect_uris: tuple[str, ...] = (DEFAULT_REDIRECT_URI,)
    latency_ms: int = 0
    page_issue_ids: int = 5000
    page_issues: int = 100
    index_lag_seconds: float = 0
    retry_after_seconds: int = 1
    #: comments per issue on average (ADF bodies)
    comments_per_issue: float = 1.0
    #: size of the one huge description per site, in bytes of JSON
    huge_description_bytes: int = 200_000
    #: days of history before sim-now over which created/updated are spread
    history_days: int = 730
    #: expose the `/_sim/*` control endpoints (advance, mutate, faults, stats) for out-of-process use
    control_api: bool = True
    extra_scopes: tuple[str, ...] = field(default=())
