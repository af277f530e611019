"""Encryption of tokens at rest (Fernet) and where its key comes from.

With Postgres the key must come from `JIRA_TOKEN_ENCRYPTION_KEY`: a key generated on one container
would be unknown to the others. With the embedded SQLite default a key is generated once into a
0600 file beside the database, so `make demo` needs no setup; that is said with a warning, because
whoever can read that folder can read the tokens.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy.engine import make_url

from jira_pipeline.settings import ConfigError

log = logging.getLogger(__name__)

KEY_FILE_SUFFIX = ".key"


def generate_key() -> str:
    return Fernet.generate_key().decode()


class TokenCipher:
    """Encrypts and decrypts token strings; never shows the key or a token in a repr."""

    def __init__(self, key: str) -> None:
        try:
            self._fernet = Fernet(key.encode() if isinstance(key, str) else key)
        except (ValueError, TypeError):
            raise ConfigError(
                "JIRA_TOKEN_ENCRYPTION_KEY is not a valid Fernet key (32 url-safe base64 bytes). "
                "Generate one with `jira-pipeline keygen`."
            ) from None

    def __repr__(self) -> str:
        return "TokenCipher(<key hidden>)"

    def encrypt(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode()

    def decrypt(self, value: str) -> str:
        try:
            return self._fernet.decrypt(value.encode()).decode()
        except InvalidToken:
            raise ConfigError(
                "Stored Jira tokens cannot be decrypted with this JIRA_TOKEN_ENCRYPTION_KEY: the key changed "
                "since the grant was stored. Restore the old key, or run `jira-pipeline connect` to store a "
                "new grant with the current key."
            ) from None


def sqlite_key_path(warehouse_url: str) -> Path | None:
    url = make_url(warehouse_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database).with_suffix(KEY_FILE_SUFFIX)


def resolve_cipher(warehouse_url: str, key: str | None) -> TokenCipher:
    """Pick the key: the env var if set; else the SQLite sidecar file (created once, 0600)."""
    if key:
        return TokenCipher(key)
    path = sqlite_key_path(warehouse_url)
    if path is None:
        raise ConfigError(
            "JIRA_TOKEN_ENCRYPTION_KEY is required when JIRA_WAREHOUSE_URL is not the embedded SQLite store. "
            "Generate one with `jira-pipeline keygen` and put it in .env."
        )
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        new_key = generate_key()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process won the race; read its key below
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(new_key + "\n")
            log.warning(
                "JIRA_TOKEN_ENCRYPTION_KEY is not set: generated a token encryption key in %s (mode 0600). "
                "Anyone who can read that folder can decrypt the stored Jira tokens; set "
                "JIRA_TOKEN_ENCRYPTION_KEY for production.",
                path,
            )
    return TokenCipher(path.read_text().strip())
