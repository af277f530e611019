"""Typed errors of the Atlassian layer.

Callers (grants, connector app, Dagster assets) branch on the *type* of an error, never on its
text: `ReconsentRequired` means a human must run the consent flow again, `AmbiguousRefresh` means
the refresh token may already have rotated server-side, `retryable` means nothing reached the
server and the same call may simply be repeated.

Invariant for every class here: the message never contains an access token, refresh token,
authorization code or client secret. Messages are built only from HTTP status codes, Atlassian's
`error`/`error_description` (scrubbed of any value we sent) and request paths.
"""

from __future__ import annotations

RECONNECT_HINT = "Run `jira-pipeline connect` to consent again."
"""The one remedy for a dead grant; the connector CLI re-runs the 3LO consent flow."""


class AtlassianError(Exception):
    """Base of every error raised by `jira_pipeline.atlassian`.

    `retryable` is True only when the failed call provably had no effect on the server (e.g. the TCP
    connection was refused before a byte was sent), so repeating it verbatim is safe.
    """

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retryable = retryable

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status={self.status!r}, retryable={self.retryable!r})"


class OAuthError(AtlassianError):
    """A call to the authorization server (token endpoint, accessible-resources) failed.

    `error` / `error_description` are Atlassian's OAuth error fields when the server sent them.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error: str | None = None,
        error_description: str | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message, status=status, retryable=retryable)
        self.error = error
        self.error_description = error_description


class ReconsentRequired(OAuthError):
    """The grant is gone (revoked, expired after 90 idle / 365 days, or a rotated-out refresh
    token was replayed). No retry can fix it; a human must consent again."""


class InvalidClient(OAuthError):
    """The token endpoint rejected our client credentials: ATLASSIAN_CLIENT_ID /
    ATLASSIAN_CLIENT_SECRET are wrong, or the app was deleted/rotated in the developer console."""


class AmbiguousRefresh(OAuthError):
    """A refresh request may have reached Atlassian but no usable answer came back (read timeout,
    connection dropped after sending, 5xx, garbled 200).

    Atlassian rotates the refresh token on every use and revokes the whole grant when a rotated-out
    token is presented after its ~10 minute leeway. So the caller must NOT replay the same refresh
    token blindly: re-read its token store (another process may have stored the rotated pair) and
    only then decide; replaying within the leeway is tolerated by Atlassian but is a last resort.
    """
