"""The OAuth 2.0 (3LO) connector web app: /add, /callback, /healthz (CONTRACT §2)."""
