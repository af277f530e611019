"""Validate JSON bodies against the official Jira Cloud OpenAPI spec (``shared/jira/``).

Uses the spec's own response schemas with ``$ref`` resolution (`referencing`) and the OAS 3.0
read validator (``readOnly`` allowed, ``nullable`` honoured, ``additionalProperties: false``
enforced). One deliberate relaxation: ``format: date-time`` also accepts Jira's own timestamp
form ``2024-03-01T10:15:30.123+0000`` (offset without a colon). Jira Cloud sends exactly that,
and the spec's own examples use it, but strict RFC 3339 would reject it.
"""

from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path
from typing import Any

from jsonschema import FormatChecker
from openapi_schema_validator import OAS30ReadValidator, oas30_format_checker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

SPEC_URI = "urn:jira-platform-openapi-v3"
_JIRA_TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}[+-]\d{4}$")


def spec_path() -> Path:
    """The spec file: ``$JIRA_OPENAPI_SPEC`` or ``shared/jira/`` beside the repository."""
    env = os.environ.get("JIRA_OPENAPI_SPEC")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        cand = parent / "shared" / "jira" / "jira-platform-openapi-v3.json"
        if cand.exists():
            return cand
        cand = parent.parent / "shared" / "jira" / "jira-platform-openapi-v3.json"
        if cand.exists():
            return cand
    raise FileNotFoundError("jira-platform-openapi-v3.json not found; set JIRA_OPENAPI_SPEC")


@functools.cache
def load_spec() -> dict[str, Any]:
    return json.loads(spec_path().read_text())


@functools.cache
def _registry() -> Registry:
    resource = Resource.from_contents(load_spec(), default_specification=DRAFT4)
    return Registry().with_resource(SPEC_URI, resource)


@functools.cache
def _format_checker() -> FormatChecker:
    checker = FormatChecker()
    checker.checkers = dict(oas30_format_checker.checkers)
    strict_dt, raises = oas30_format_checker.checkers["date-time"]

    def date_time(value: object) -> bool:
        if isinstance(value, str) and _JIRA_TS.match(value):
            return True
        return bool(strict_dt(value))

    checker.checkers["date-time"] = (date_time, raises)
    return checker


def _pointer(*parts: str) -> str:
    return "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


@functools.cache
def response_validator(path: str, method: str, status: str = "200") -> OAS30ReadValidator:
    """Validator of the ``application/json`` response of ``method path`` (spec path, e.g.
    ``/rest/api/3/issue/bulkfetch``) for `status`."""
    op = load_spec()["paths"][path][method.lower()]
    content = op["responses"][status]["content"]["application/json"]
    if "schema" not in content:
        raise KeyError(f"no schema for {method} {path} {status}")
    ref = f"{SPEC_URI}#/" + _pointer(
        "paths", path, method.lower(), "responses", status, "content", "application/json", "schema"
    )
    return OAS30ReadValidator({"$ref": ref}, registry=_registry(), format_checker=_format_checker())


@functools.cache
def schema_validator(name: str) -> OAS30ReadValidator:
    """Validator of ``#/components/schemas/<name>``."""
    return OAS30ReadValidator(
        {"$ref": f"{SPEC_URI}#/components/schemas/{name}"},
        registry=_registry(),
        format_checker=_format_checker(),
    )


def response_errors(path: str, method: str, body: Any, status: str = "200", limit: int = 5) -> list[str]:
    """Up to `limit` readable validation errors (empty list = valid)."""
    out = []
    for err in response_validator(path, method, status).iter_errors(body):
        where = "/".join(str(p) for p in err.absolute_path)
        out.append(f"{method} {path} {status} at /{where}: {err.message[:300]}")
        if len(out) >= limit:
            break
    return out
