"""Encryption of tokens at rest (Fernet) and where its key comes from.

With Postgres the key must come from `JIRA_TOKEN_ENCRYPTION_KEY`: a key generated on one container
would be unknown to the others. With the embedded SQLite default a key is generated once into a
0600 file beside the database, so `make demo` needs no setup; that is said with a warning, because
whoever can read that folder can read the tokens.
"""

from __future__ import annotations

import logging
import os
import secrets
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


def _create_key_file(path: Path) -> None:
    """Create the key file with its content in one step, or leave the one another process made.

    Several Dagster step processes may start at once on a fresh install. Writing into an
    `O_EXCL`-created file would let a second process read it empty in between; instead the key is
    written to a private temporary file that is then hard-linked into place, which either publishes
    a complete file or fails because one already exists.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(generate_key() + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return  # another process won the race; its key is read by the caller
        except OSError:
            # A filesystem without hard links: rename is atomic too, but replaces a concurrent
            # winner's file, so only do it if there still is none (a narrow window, logged below).
            if path.exists():
                return
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    log.warning(
        "JIRA_TOKEN_ENCRYPTION_KEY is not set: generated a token encryption key in %s (mode 0600). "
        "Anyone who can read that folder can decrypt the stored Jira tokens; set "
        "JIRA_TOKEN_ENCRYPTION_KEY for production.",
        path,
    )


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
        _create_key_file(path)
    return TokenCipher(path.read_text().strip())
