"""The production deployment files hold together: docker-compose.yml, Dockerfile, dagster.yaml,
dagster.local.yaml, workspace.yaml, .env.example and the commands in docs/PRODUCTION.md.

No Docker engine runs where these tests run, so nothing here builds an image or starts a container.
Instead:
- docker-compose.yml is validated against the Compose Specification schema (../shared/compose) and
  interpolated with .env.example the way `docker compose config` would;
- every command a container, a healthcheck or the docs run is checked against the CLIs really
  installed (entry points from package metadata, subcommands and options from the CLI itself);
- both Dagster instance configs go through Dagster's own config validation and are instantiated,
  the production one against a scratch PostgreSQL database;
- the production topology (PostgreSQL storage, code server over gRPC, daemon dequeuing runs with the
  per-site tag limit, DefaultRunLauncher) is started natively with the commands of
  docker-compose.yml, pointed at 127.0.0.1.

Tests that need the `jira-pipeline` CLI (jira_pipeline/cli.py) fail until that CLI imports and offers
the subcommand; nothing is skipped.
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.metadata as metadata
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import click
import jsonschema
import pytest
import yaml
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parents[1]
# CI clones the repository into a folder with shared/ beside it; so does the development tree.
SHARED = REPO.parent / "shared"
BIN = Path(sys.executable).parent

SERVICES = ("postgres", "code-server", "webserver", "daemon", "connector")
APP_SERVICES = ("code-server", "webserver", "daemon", "connector")
DAGSTER_HOME_IN_IMAGE = "/opt/dagster/home"
PARQUET_IN_IMAGE = "/data/parquet"
SITE_TAG = "jira/cloud_id"


# ----------------------------------------------------------------------------------------------------
# Helpers: files, .env, compose interpolation
# ----------------------------------------------------------------------------------------------------


def shared_file(relative: str) -> Path:
    """A file of ../shared, or a failure that says where it was expected (never a skip)."""
    path = SHARED / relative
    if not path.is_file():
        pytest.fail(
            f"{path} is missing. The deployment tests read the shared reference data from "
            f"'../shared' relative to the repository root ({REPO}); clone or copy it there "
            "(CI checks the repository out beside shared/).",
            pytrace=False,
        )
    return path


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def compose() -> dict[str, Any]:
    return load_yaml(REPO / "docker-compose.yml")


def parse_env_file(path: Path) -> tuple[dict[str, str], set[str]]:
    """(active KEY=value assignments, names only mentioned as commented-out `# KEY=` lines).

    Compose's .env rules for the simple form used here: one KEY=value a line, `#` comments, optional
    surrounding quotes.
    """
    active: dict[str, str] = {}
    commented: set[str] = set()
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            m = re.match(r"#\s*([A-Z][A-Z0-9_]*)=", line)
            if m:
                commented.add(m.group(1))
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not a KEY=value line: {raw!r}"
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        active[key.strip()] = value
    return active, commented


class MissingVariable(Exception):
    """A `${VAR:?message}` whose variable is unset: `docker compose` refuses to start."""


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _closing_brace(text: str, open_at: int) -> int:
    depth = 0
    for i in range(open_at, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
    raise ValueError(f"unbalanced braces in {text!r}")


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose-spec interpolation: $$, $VAR, ${VAR}, ${VAR:-d}, ${VAR-d}, ${VAR:?e}, ${VAR?e},
    ${VAR:+r}, ${VAR+r}, nested in defaults. Enough to emulate `docker compose config` here."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("${", i):
            end = _closing_brace(text, i + 1)
            out.append(_resolve(text[i + 2 : end], env))
            i = end + 1
        elif text[i] == "$" and (m := _NAME.match(text, i + 1)):
            out.append(env.get(m.group(), ""))
            i = m.end()
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _resolve(expr: str, env: Mapping[str, str]) -> str:
    m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?", expr, re.S)
    if not m:
        raise ValueError(f"invalid interpolation ${{{expr}}}")
    name, op, arg = m.groups()
    value = env.get(name)
    if op is None:
        return value or ""
    unset = value is None or (op.startswith(":") and value == "")
    if op.endswith("-"):
        return interpolate(arg, env) if unset else str(value)
    if op.endswith("?"):
        if unset:
            raise MissingVariable(f"{name}: {interpolate(arg, env)}")
        return str(value)
    return "" if unset else interpolate(arg, env)


def interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [interpolate_tree(v, env) for v in node]
    if isinstance(node, dict):
        return {k: interpolate_tree(v, env) for k, v in node.items()}
    return node


def referenced_variables(node: Any) -> set[str]:
    """Every variable name a compose value interpolates (nested defaults included, `$$` excluded)."""
    names: set[str] = set()
    if isinstance(node, str):
        text = node.replace("$$", "")
        names.update(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text))
        names.update(re.findall(r"\$([A-Za-z_][A-Za-z0-9_]*)", text))
    elif isinstance(node, list):
        for v in node:
            names |= referenced_variables(v)
    elif isinstance(node, dict):
        for v in node.values():
            names |= referenced_variables(v)
    return names


def effective_compose() -> dict[str, Any]:
    """docker-compose.yml as `docker compose config` sees it with .env = .env.example."""
    env, _ = parse_env_file(REPO / ".env.example")
    return interpolate_tree(compose(), env)


def option_value(argv: list[str], *flags: str) -> str:
    for i, token in enumerate(argv):
        if token in flags:
            return argv[i + 1]
    raise AssertionError(f"{argv} has none of {flags}")


def contract_variables() -> list[str]:
    text = shared_file("CONTRACT.md").read_text(encoding="utf-8")
    section = text[text.index("## 1.") : text.index("## 2.")]
    names = re.findall(r"^\|\s*`([A-Z][A-Z0-9_]*)`\s*\|", section, re.M)
    assert len(names) >= 10, f"could not read the variable table of CONTRACT.md §1 (got {names})"
    return names


def seed_callback_url() -> str:
    text = shared_file("seed/jira-oauth-connector-guide.txt").read_text(encoding="utf-8")
    m = re.search(r"http://localhost:\d+/\S*?/callback", text)
    assert m, "no callback URL found in the seed guide"
    return m.group()


# ----------------------------------------------------------------------------------------------------
# Helpers: Dockerfile
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    stage: int


def dockerfile() -> list[Instruction]:
    lines: list[str] = []
    pending = ""
    for raw in (REPO / "Dockerfile").read_text(encoding="utf-8").splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    stage = -1
    out = []
    for line in lines:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        out.append(Instruction(keyword, args.strip(), stage))
    return out


def final_stage() -> list[Instruction]:
    instructions = dockerfile()
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last]


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for ins in final_stage():
        if ins.keyword == "ENV":
            for pair in shlex.split(ins.args):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def dockerfile_cmd() -> list[str]:
    cmds = [i for i in final_stage() if i.keyword == "CMD"]
    assert len(cmds) == 1, "the final stage needs exactly one CMD"
    argv = json.loads(cmds[0].args)
    assert isinstance(argv, list), "CMD must be the exec (JSON array) form so signals reach Dagster"
    return argv


def dockerignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def dockerignored(path: str) -> bool:
    for pattern in dockerignore_patterns():
        if pattern.startswith("!"):
            continue
        if fnmatch.fnmatch(path, pattern) or path.startswith(pattern.rstrip("/") + "/"):
            return True
    return False


# ----------------------------------------------------------------------------------------------------
# Helpers: installed CLIs
# ----------------------------------------------------------------------------------------------------


def pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def _normalize(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


def image_distributions() -> set[str]:
    """The distributions the image installs directly: the project and its declared dependencies."""
    project = pyproject()["project"]
    names = {_normalize(project["name"])}
    for requirement in project["dependencies"]:
        names.add(_normalize(re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0]))
    return names


def console_scripts() -> dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group="console_scripts")}


def assert_installed_script(script: str) -> metadata.EntryPoint:
    """`script` is a console script of a distribution the image installs, and it is on PATH here."""
    eps = console_scripts()
    assert script in eps, f"{script!r} is not an installed console script"
    ep = eps[script]
    dist = _normalize(ep.dist.name) if ep.dist else "?"
    assert dist in image_distributions(), (
        f"{script!r} comes from {dist!r}, which pyproject.toml does not declare, so the image may lack it"
    )
    assert (BIN / script).exists(), f"{script!r} is not in {BIN}"
    return ep


def click_root(script: str) -> click.Command | None:
    """The click command behind a console script, or None when the CLI is not click.

    Dagster's scripts point at small `main` wrappers; the click group sits beside them as `cli`.
    """
    ep = assert_installed_script(script)
    try:
        module = importlib.import_module(ep.module)
    except Exception as exc:
        pytest.fail(f"{script}: cannot import {ep.module} ({type(exc).__name__}: {exc})", pytrace=False)
    candidate = getattr(module, "cli", None)
    if isinstance(candidate, click.Command):
        return candidate
    loaded = ep.load()
    return loaded if isinstance(loaded, click.Command) else None


def split_subcommands(root: click.Command, args: list[str]) -> tuple[click.Command, list[str], list[str]]:
    cmd, path, rest = root, [], list(args)
    ctx = click.Context(root)
    while isinstance(cmd, click.Group) and rest and not rest[0].startswith("-"):
        sub = cmd.get_command(ctx, rest[0])
        assert sub is not None, f"{' '.join(path) or root.name}: no subcommand {rest[0]!r}"
        path.append(rest.pop(0))
        cmd = sub
    return cmd, path, rest


def option_tokens(rest: list[str], takes_value: Mapping[str, bool] | None = None) -> list[str]:
    names = []
    i = 0
    while i < len(rest):
        token = rest[i]
        if token.startswith("-") and token != "-":
            name = token.split("=", 1)[0]
            names.append(name)
            if takes_value is not None and takes_value.get(name, False) and "=" not in token:
                i += 1
        i += 1
    return names


def run_help(argv: list[str]) -> str:
    proc = subprocess.run(
        [str(BIN / argv[0]), *argv[1:], "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
    )
    assert proc.returncode == 0, f"`{' '.join(argv)} --help` exited {proc.returncode}:\n{proc.stderr[-2000:]}"
    return proc.stdout


def subcommand_prefix(argv: list[str]) -> list[str]:
    prefix = [argv[0]]
    for token in argv[1:]:
        if token.startswith("-"):
            break
        prefix.append(token)
    return prefix


def check_invocation(argv: list[str], *, execute_help: bool) -> None:
    """The executable is installed, its subcommands exist and every option used is one it declares.

    execute_help: also run `<script> <subcommands> --help` as a process (exit 0), which catches an
    entry point that imports fine in-process but breaks when started as a program.
    """
    script = argv[0]
    root = click_root(script)
    if root is not None:
        cmd, path, rest = split_subcommands(root, argv[1:])
        takes_value: dict[str, bool] = {}
        for param in cmd.params:
            if isinstance(param, click.Option):
                for name in (*param.opts, *param.secondary_opts):
                    takes_value[name] = not (param.is_flag or param.count)
        for name in option_tokens(rest, takes_value):
            assert name in takes_value or name == "--help", (
                f"`{script} {' '.join(path)}` has no option {name} (it has {sorted(takes_value)})"
            )
        if execute_help:
            run_help([script, *path])
        return
    # Not click (e.g. argparse): the help text is the interface.
    prefix = subcommand_prefix(argv)
    text = run_help(prefix)
    for name in option_tokens(argv[len(prefix) :]):
        assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text), (
            f"`{' '.join(prefix)} --help` does not mention {name}:\n{text}"
        )


# ----------------------------------------------------------------------------------------------------
# docker-compose.yml
# ----------------------------------------------------------------------------------------------------


def test_compose_file_validates_against_the_compose_spec() -> None:
    schema = json.loads(shared_file("compose/compose-spec.schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema)
    for label, document in (
        ("as written", compose()),
        ("interpolated with .env.example", effective_compose()),
    ):
        errors = sorted(validator.iter_errors(document), key=lambda e: e.json_path)
        assert not errors, f"docker-compose.yml ({label}) breaks the Compose spec:\n" + "\n".join(
            f"  {e.json_path}: {e.message}" for e in errors
        )


def test_compose_topology() -> None:
    doc = effective_compose()
    services = doc["services"]
    assert set(services) == set(SERVICES)

    assert services["postgres"]["image"].startswith("postgres:16")
    assert any(v.endswith(":/var/lib/postgresql/data") for v in services["postgres"]["volumes"])
    # The OAuth client secret and the token key stay out of the database container.
    assert "env_file" not in services["postgres"]

    image = {services[name]["image"] for name in APP_SERVICES}
    assert len(image) == 1, f"all application services must run the one image, got {image}"
    for name, service in services.items():
        assert service.get("restart") in {"unless-stopped", "always"}, f"{name}: no restart policy"
        assert "healthcheck" in service, f"{name}: no healthcheck"
        for dep, spec in service.get("depends_on", {}).items():
            assert spec["condition"] == "service_healthy", f"{name} -> {dep} must wait for healthy"
            assert "healthcheck" in services[dep]
    for name in APP_SERVICES:
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("webserver", "daemon"):
        assert services[name]["depends_on"]["code-server"]["condition"] == "service_healthy"

    # Every application container runs with the image's Dagster home; pipeline containers with the
    # Parquet volume path and a PostgreSQL warehouse.
    for name in APP_SERVICES:
        assert services[name]["environment"]["DAGSTER_HOME"] == DAGSTER_HOME_IN_IMAGE
    for name in ("code-server", "connector"):
        env = services[name]["environment"]
        assert env["JIRA_PARQUET_DIR"] == PARQUET_IN_IMAGE
        assert make_url(env["JIRA_WAREHOUSE_URL"]).drivername == "postgresql+psycopg"
        assert services[name]["env_file"] in (".env", [".env"])
    assert f"parquet:{PARQUET_IN_IMAGE}" in services["code-server"]["volumes"]

    # Named volumes only (no host paths), all declared.
    declared = set(doc["volumes"])
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            assert source in declared, f"{name}: volume {source!r} is not a declared named volume"

    # The UI and the connector are reachable on the host, on loopback only (no login in front).
    assert services["webserver"]["ports"] == ["127.0.0.1:3000:3000"]
    assert "ports" not in services["postgres"]
    assert "ports" not in services["code-server"]


def test_connector_serves_the_seed_callback_unchanged() -> None:
    callback = urlparse(seed_callback_url())
    env, _ = parse_env_file(REPO / ".env.example")
    assert env["JIRA_REDIRECT_URI"] == seed_callback_url()
    connector = effective_compose()["services"]["connector"]
    argv = connector["command"]
    assert argv[:2] == ["jira-pipeline", "serve"]
    assert option_value(argv, "--host") == "0.0.0.0"
    container_port = option_value(argv, "--port")
    assert connector["ports"] == [f"127.0.0.1:{callback.port}:{container_port}"]
    probe = connector["healthcheck"]["test"]
    assert f"127.0.0.1:{container_port}/healthz" in " ".join(probe)


def test_compose_grpc_ports_agree_with_workspace() -> None:
    services = compose()["services"]
    workspace = load_yaml(REPO / "workspace.yaml")
    (entry,) = workspace["load_from"]
    grpc = entry["grpc_server"]
    assert grpc["host"] == "code-server" and grpc["host"] in services
    assert grpc["location_name"] == pyproject()["tool"]["dagster"]["code_location_name"]
    code_server = services["code-server"]["command"]
    assert option_value(code_server, "-p", "--port") == str(grpc["port"])
    assert option_value(code_server, "-h", "--host") == "0.0.0.0"
    assert option_value(code_server, "-m", "--module-name") == pyproject()["tool"]["dagster"]["module_name"]
    health = services["code-server"]["healthcheck"]["test"]
    assert health[0] == "CMD" and option_value(health, "-p", "--port") == str(grpc["port"])
    for name in ("webserver", "daemon"):
        assert option_value(services[name]["command"], "-w", "--workspace") == "workspace.yaml"

    from dagster._core.workspace.config_schema import ensure_workspace_config

    ensure_workspace_config(workspace, str(REPO / "workspace.yaml"))


def test_every_compose_variable_is_in_env_example() -> None:
    used = referenced_variables(compose())
    active, _ = parse_env_file(REPO / ".env.example")
    assert used, "docker-compose.yml interpolates nothing? the parser is broken"
    missing = sorted(used - set(active))
    assert not missing, f".env.example lacks {missing}, which docker-compose.yml interpolates"


def test_env_example_interpolates_to_a_working_configuration() -> None:
    env, _ = parse_env_file(REPO / ".env.example")
    services = effective_compose()["services"]
    storage = services["code-server"]["environment"]
    warehouse = make_url(storage["JIRA_WAREHOUSE_URL"])
    # The default warehouse is the bundled database, reached with the same credentials as Dagster's.
    assert (warehouse.host, warehouse.port, warehouse.database) == ("postgres", 5432, env["POSTGRES_DB"])
    assert (warehouse.username, warehouse.password) == (env["POSTGRES_USER"], env["POSTGRES_PASSWORD"])
    assert storage["DAGSTER_PG_PASSWORD"] == env["POSTGRES_PASSWORD"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == env["POSTGRES_PASSWORD"]
    assert services["postgres"]["healthcheck"]["test"][-3:] == ["jira", "-d", "jira"]

    # An explicit JIRA_WAREHOUSE_URL in .env wins over the bundled default.
    other = "postgresql+psycopg://u:p@db.example.com:5432/w"
    overridden = interpolate_tree(compose(), {**env, "JIRA_WAREHOUSE_URL": other})
    assert overridden["services"]["connector"]["environment"]["JIRA_WAREHOUSE_URL"] == other

    # Without a password docker compose refuses to start, naming the fix.
    with pytest.raises(MissingVariable, match=r"POSTGRES_PASSWORD.*\.env"):
        interpolate_tree(compose(), {k: v for k, v in env.items() if k != "POSTGRES_PASSWORD"})


def test_interpolation_helper_follows_compose_rules() -> None:
    env = {"SET": "x", "EMPTY": ""}
    assert interpolate("${SET:-d}/${EMPTY:-d}/${EMPTY-d}/${UNSET-d}", env) == "x/d//d"
    assert interpolate("${UNSET:-${SET}-${UNSET2:-z}}", env) == "x-z"
    assert interpolate("$$HOME ${SET:+y} ${EMPTY:+y}.", env) == "$HOME y ."
    with pytest.raises(MissingVariable):
        interpolate("${EMPTY:?needed}", env)
    assert referenced_variables("${A:-${B}} $$C $D") == {"A", "B", "D"}


# ----------------------------------------------------------------------------------------------------
# .env.example
# ----------------------------------------------------------------------------------------------------


def test_every_contract_variable_is_in_env_example() -> None:
    active, commented = parse_env_file(REPO / ".env.example")
    missing = [name for name in contract_variables() if name not in active and name not in commented]
    assert not missing, f".env.example does not document {missing} (CONTRACT.md §1)"
    # The two that docker-compose.yml pins to the container layout are documented but not set, so a
    # laptop value cannot leak into the containers or into a shell that sources .env.
    assert {"DAGSTER_HOME", "JIRA_PARQUET_DIR"} <= commented


def test_env_example_has_a_comment_for_every_variable_and_no_secret() -> None:
    lines = (REPO / ".env.example").read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if re.match(r"[A-Z][A-Z0-9_]*=", line):
            assert i > 0 and lines[i - 1].startswith("#"), f".env.example: no comment right above {line!r}"
    active, _ = parse_env_file(REPO / ".env.example")
    assert active["ATLASSIAN_CLIENT_ID"] == "your_atlassian_client_id"
    assert active["ATLASSIAN_CLIENT_SECRET"] == "your_atlassian_client_secret"
    assert active["JIRA_TOKEN_ENCRYPTION_KEY"].startswith("your_")
    assert active["POSTGRES_PASSWORD"].startswith("change_me")
    # Secrets never enter git or an image layer.
    assert ".env" in (REPO / ".gitignore").read_text(encoding="utf-8").split()
    assert dockerignored(".env")
    assert not dockerignored("pyproject.toml")


# ----------------------------------------------------------------------------------------------------
# Dockerfile and the files it and compose reference
# ----------------------------------------------------------------------------------------------------


def test_dockerfile_builds_the_production_image() -> None:
    instructions = dockerfile()
    stages = [i.args for i in instructions if i.keyword == "FROM"]
    assert stages and all(s.split()[0] == "python:3.11-slim" for s in stages), stages
    # Bytecode is compiled at install time; nothing may switch that off.
    assert not any("PYTHONDONTWRITEBYTECODE" in i.args for i in instructions)
    env = dockerfile_env()
    assert env["DAGSTER_HOME"] == DAGSTER_HOME_IN_IMAGE
    final = final_stage()
    users = [i.args for i in final if i.keyword == "USER"]
    assert users and users[-1] not in {"root", "0"}, "the runtime user must not be root"
    workdirs = [i.args.replace("$DAGSTER_HOME", env["DAGSTER_HOME"]) for i in final if i.keyword == "WORKDIR"]
    assert workdirs[-1] == DAGSTER_HOME_IN_IMAGE, "`-w workspace.yaml` in compose resolves against WORKDIR"
    # Non-editable install of the built wheel.
    runs = " ".join(i.args for i in instructions if i.keyword == "RUN")
    assert not re.search(r"pip install\s+(-e|--editable)\b", runs)
    assert re.search(r"pip wheel\b", runs) and re.search(r"pip install\s+\S*\.whl", runs)

    copied_to_home: set[str] = set()
    for ins in instructions:
        if ins.keyword != "COPY" or "--from=" in ins.args:
            continue
        parts = [p for p in shlex.split(ins.args) if not p.startswith("--")]
        sources, dest = parts[:-1], parts[-1]
        for source in sources:
            assert (REPO / source).exists(), f"Dockerfile copies {source!r}, which is not in the repository"
            assert not dockerignored(source), f"Dockerfile copies {source!r}, but .dockerignore excludes it"
            if dest.replace("$DAGSTER_HOME", env["DAGSTER_HOME"]).rstrip("/") == DAGSTER_HOME_IN_IMAGE:
                copied_to_home.add(source)
    assert {"dagster.yaml", "workspace.yaml"} <= copied_to_home
    assert "dagster.local.yaml" not in copied_to_home


def test_dockerfile_cmd_is_the_code_server_of_compose() -> None:
    argv = dockerfile_cmd()
    assert argv == compose()["services"]["code-server"]["command"]
    assert_installed_script(argv[0])


def test_compose_references_files_that_exist() -> None:
    services = compose()["services"]
    for name in APP_SERVICES:
        build = services[name]["build"]
        assert (REPO / build["context"]).is_dir()
        assert (REPO / build["context"] / build["dockerfile"]).is_file()
        env_file = services[name].get("env_file")
        if env_file is not None:
            # .env itself is the user's copy of .env.example (never committed).
            assert env_file in (".env", [".env"])
            assert (REPO / ".env.example").is_file()
    # The workspace the webserver and daemon load is inside the image's working directory.
    assert (REPO / "workspace.yaml").is_file()


def _service_commands() -> list[tuple[str, list[str]]]:
    services = compose()["services"]
    return [(name, services[name]["command"]) for name in APP_SERVICES]


@pytest.mark.parametrize(("service", "argv"), _service_commands(), ids=[s for s, _ in _service_commands()])
def test_service_command_is_a_real_installed_cli(service: str, argv: list[str]) -> None:
    """Fails for `connector` until jira_pipeline/cli.py imports and has `serve --host --port`."""
    check_invocation(argv, execute_help=True)


def test_healthchecks_call_real_commands() -> None:
    services = compose()["services"]
    for name in APP_SERVICES:
        test = services[name]["healthcheck"]["test"]
        assert test[0] == "CMD", f"{name}: use the exec form (no shell in between)"
        argv = test[1:]
        if argv[0] == "python":
            assert argv[1] == "-c"
            compile(argv[2], f"<{name} healthcheck>", "exec")
        else:
            check_invocation(argv, execute_help=False)
    webserver_probe = " ".join(services["webserver"]["healthcheck"]["test"])
    port = option_value(services["webserver"]["command"], "-p", "--port")
    assert f"127.0.0.1:{port}/server_info" in webserver_probe
    import dagster_webserver.webserver as webserver_module

    assert '"/server_info"' in Path(webserver_module.__file__).read_text(encoding="utf-8")


def test_entry_points_match_pyproject() -> None:
    """The `jira-pipeline` script the connector runs is the one pyproject declares and is installed."""
    scripts = pyproject()["project"]["scripts"]
    assert scripts == {"jira-pipeline": "jira_pipeline.cli:main"}
    ep = assert_installed_script("jira-pipeline")
    assert ep.value == scripts["jira-pipeline"]


def test_code_server_module_loads_as_a_code_location(tmp_path: Path) -> None:
    """The module the code-server container serves loads as a Dagster code location from outside the
    source tree (as in the image), and has what dagster.yaml and the docs rely on: the job
    `jira_sync_job`, runs tagged `jira/cloud_id`, Jira-calling assets in the `jira_api` pool."""
    module = option_value(compose()["services"]["code-server"]["command"], "-m", "--module-name")
    proc = subprocess.run(
        [str(BIN / "dagster"), "definitions", "validate", "-m", module],
        cwd=tmp_path,
        env={**os.environ, "DAGSTER_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]

    from dagster import AssetKey

    defs = importlib.import_module(module).defs
    job = defs.resolve_job_def("jira_sync_job")
    assert SITE_TAG in job.tags, f"jira_sync_job runs must carry the {SITE_TAG} tag the queue limits on"
    for key in ("jira/projects", "jira/users", "jira/issues", "jira/worklogs"):
        asset = defs.resolve_assets_def(AssetKey.from_user_string(key))
        assert asset.op.pool == "jira_api", f"{key} is not in the jira_api pool"


# ----------------------------------------------------------------------------------------------------
# docs/PRODUCTION.md: every command it tells a user to run exists with those options
# ----------------------------------------------------------------------------------------------------

_OUR_SCRIPTS = ("dagster", "dagster-daemon", "dagster-webserver", "dg", "jira-pipeline")


def _doc_commands() -> list[list[str]]:
    text = (REPO / "docs" / "PRODUCTION.md").read_text(encoding="utf-8")
    commands: list[list[str]] = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            argv = shlex.split(line, comments=True)
            if argv[:2] == ["docker", "compose"] and len(argv) > 2 and argv[2] in {"exec", "run"}:
                rest = argv[3:]
                while rest and rest[0].startswith("-"):
                    rest.pop(0)
                service, argv = rest[0], rest[1:]
                assert service in SERVICES, f"docs run a command in unknown service {service!r}"
            if argv and argv[0] in _OUR_SCRIPTS:
                commands.append(argv)
    return commands


def test_docs_list_the_required_commands() -> None:
    joined = [" ".join(c) for c in _doc_commands()]
    expected = [
        "jira-pipeline keygen",
        "jira-pipeline status",
        "dg launch -m jira_pipeline.definitions --assets key:jira/issues --partition-range",
        "dagster asset materialize -m jira_pipeline.definitions --select jira/issues --partition-range",
        "dagster job backfill -w workspace.yaml -j jira_sync_job",
        "dagster instance concurrency set jira_api",
    ]
    for prefix in expected:
        assert any(c.startswith(prefix) for c in joined), f"docs/PRODUCTION.md lacks `{prefix} ...`"
    text = (REPO / "docs" / "PRODUCTION.md").read_text(encoding="utf-8")
    assert seed_callback_url() in text
    assert "http://localhost:8000/api/v1/auth/jira/connector/add" in text
    for scope in ("read:jira-work", "read:jira-user", "offline_access"):
        assert scope in text


@pytest.mark.parametrize("argv", _doc_commands(), ids=lambda argv: " ".join(argv[:4]))
def test_docs_command_exists_with_its_options(argv: list[str]) -> None:
    """`jira-pipeline ...` cases fail until the CLI exists with that subcommand and options."""
    check_invocation(argv, execute_help=False)


# ----------------------------------------------------------------------------------------------------
# Dagster instance configs through Dagster's own validation
# ----------------------------------------------------------------------------------------------------


def _instance_home(tmp_path: Path, config: Path) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(config, home / "dagster.yaml")
    return home


def _assert_queue_semantics(instance: Any) -> None:
    from dagster._core.run_coordinator import QueuedRunCoordinator

    assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
    queue = instance.get_concurrency_config().run_queue_config
    assert queue is not None and queue.max_concurrent_runs >= 1
    assert {"key": SITE_TAG, "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in (
        queue.tag_concurrency_limits
    )
    pools = instance.get_concurrency_config().pool_config
    assert pools.default_pool_limit is not None and pools.default_pool_limit >= 1
    assert instance.telemetry_enabled is False
    assert instance.run_monitoring_enabled
    assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] > 0


def test_local_instance_config_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dagster import DagsterInstance
    from dagster._core.instance.config import dagster_instance_config
    from dagster._core.storage.runs import SqliteRunStorage

    home = _instance_home(tmp_path, REPO / "dagster.local.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    dagster_instance_config(str(home))
    instance = DagsterInstance.from_config(str(home))
    try:
        assert isinstance(instance.run_storage, SqliteRunStorage)
        _assert_queue_semantics(instance)
        assert instance.event_log_storage.supports_global_concurrency_limits
        assert (home / "history").is_dir(), "SQLite storage must live under DAGSTER_HOME"
    finally:
        instance.dispose()


def _pg_env(pg_url: str) -> dict[str, str]:
    url = make_url(pg_url)
    return {
        "DAGSTER_PG_USERNAME": url.username or "",
        "DAGSTER_PG_PASSWORD": url.password or "",
        "DAGSTER_PG_HOST": url.host or "127.0.0.1",
        "DAGSTER_PG_PORT": str(url.port or 5432),
        "DAGSTER_PG_DB": url.database or "",
    }


def test_production_instance_config_loads_against_postgres(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dagster import DagsterInstance
    from dagster._core.instance.config import dagster_instance_config
    from dagster._core.launcher import DefaultRunLauncher
    from dagster._core.storage.dagster_run import DagsterRun
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

    home = _instance_home(tmp_path, REPO / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    for key, value in _pg_env(pg_url).items():
        monkeypatch.setenv(key, value)
    dagster_instance_config(str(home))
    # Every connection setting comes from the environment, so .env decides, not the image.
    postgres_db = load_yaml(home / "dagster.yaml")["storage"]["postgres"]["postgres_db"]
    for key in ("username", "password", "hostname", "db_name", "port"):
        assert set(postgres_db[key]) == {"env"}, f"postgres_db.{key} must come from an env var"
    instance = DagsterInstance.from_config(str(home))
    try:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert instance.run_storage.postgres_url.startswith("postgresql+psycopg2://")
        assert isinstance(instance.run_launcher, DefaultRunLauncher)
        _assert_queue_semantics(instance)
        assert instance.run_retries_enabled and instance.run_retries_max_retries >= 1
        assert instance.run_monitoring_max_runtime_seconds > 0  # bounds orphaned runs

        # Storing an event NOTIFYs listeners; with the psycopg 3 driver that SQLAlchemy 2.1 picks for
        # a bare `postgresql://` this very call fails, which is why the scheme is pinned.
        run = instance.add_run(
            DagsterRun(job_name="deploy_probe", run_id="0f0f0f0f-0000-4000-8000-000000000001")
        )
        instance.report_engine_event("deploy config probe", dagster_run=run)
        messages = [entry.message for entry in instance.all_logs(run.run_id)]
        assert "deploy config probe" in messages
    finally:
        instance.dispose()


def test_local_and_production_configs_share_queue_semantics() -> None:
    prod = load_yaml(REPO / "dagster.yaml")
    local = load_yaml(REPO / "dagster.local.yaml")
    assert (
        prod["concurrency"]["runs"]["tag_concurrency_limits"]
        == local["concurrency"]["runs"]["tag_concurrency_limits"]
    )
    assert prod["run_coordinator"]["class"] == local["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert prod["telemetry"] == local["telemetry"] == {"enabled": False}
    assert set(prod["storage"]) == {"postgres"} and set(local["storage"]) == {"sqlite"}


# ----------------------------------------------------------------------------------------------------
# The production topology, natively
# ----------------------------------------------------------------------------------------------------

_STUB_DEFINITIONS = '''
"""Stand-in for jira_pipeline.definitions: one Jira-style asset in the jira_api pool."""
import time

from dagster import Definitions, asset, define_asset_job


@asset(key=["jira", "issues"], pool="jira_api")
def issues() -> None:
    time.sleep(5)


defs = Definitions(assets=[issues], jobs=[define_asset_job("jira_sync_job", selection=[issues])])
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _replace_option(argv: list[str], flags: tuple[str, ...], value: str) -> list[str]:
    out = list(argv)
    for i, token in enumerate(out):
        if token in flags:
            out[i + 1] = value
            return out
    raise AssertionError(f"{argv} has none of {flags}")


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes this test starts, each in its own session; stopped (and their children) at the end.

    SIGTERM first (Dagster maps it to its SIGINT handler), then SIGKILL: a process started from a
    non-interactive background shell inherits SIGINT=ignored and with it ignores SIGTERM.
    """
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    for proc in started:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the group may still hold the run workers
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


def test_production_topology_queues_one_run_per_site(
    tmp_path: Path,
    pg_url: str,
    monkeypatch: pytest.MonkeyPatch,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    """code-server + daemon as in docker-compose.yml, on the production dagster.yaml and PostgreSQL.

    Two runs for one site and one for another are queued; the daemon must start the two sites in
    parallel and the same site's runs one after the other, through the gRPC code server.
    """
    from dagster import DagsterInstance, DagsterRunStatus
    from dagster._core.storage.tags import GRPC_INFO_TAG

    home = _instance_home(tmp_path, REPO / "dagster.yaml")
    code_dir = tmp_path / "code"
    code_dir.mkdir()
    (code_dir / "stub_jira_definitions.py").write_text(_STUB_DEFINITIONS, encoding="utf-8")
    env = {
        **os.environ,
        **_pg_env(pg_url),
        "DAGSTER_HOME": str(home),
        "PYTHONPATH": str(code_dir),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    for key in ("DAGSTER_HOME", *_pg_env(pg_url)):
        monkeypatch.setenv(key, env[key])

    port = _free_port()
    workspace = load_yaml(REPO / "workspace.yaml")
    workspace["load_from"][0]["grpc_server"].update(host="127.0.0.1", port=port)
    workspace_file = tmp_path / "workspace.yaml"
    workspace_file.write_text(yaml.safe_dump(workspace), encoding="utf-8")

    services = compose()["services"]

    def start(argv: list[str], log: str) -> subprocess.Popen[bytes]:
        out = (tmp_path / log).open("wb")
        proc = subprocess.Popen(
            [str(BIN / argv[0]), *argv[1:]],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        processes.append(proc)
        return proc

    code_server = services["code-server"]["command"]
    code_server = _replace_option(code_server, ("-h", "--host"), "127.0.0.1")
    code_server = _replace_option(code_server, ("-p", "--port"), str(port))
    code_server = _replace_option(code_server, ("-m", "--module-name"), "stub_jira_definitions")
    start(code_server, "code-server.log")

    health = _replace_option(services["code-server"]["healthcheck"]["test"][1:], ("-p", "--port"), str(port))
    deadline = time.monotonic() + 90
    while True:
        probe = subprocess.run([str(BIN / health[0]), *health[1:]], env=env, capture_output=True, timeout=60)
        if probe.returncode == 0:
            break
        assert time.monotonic() < deadline, (
            "code server never became healthy:\n"
            + (tmp_path / "code-server.log").read_text(errors="replace")[-3000:]
        )
        time.sleep(1)

    launches = [
        subprocess.Popen(
            [
                str(BIN / "dagster"),
                "job",
                "launch",
                "-w",
                str(workspace_file),
                "-j",
                "jira_sync_job",
                "--tags",
                json.dumps({SITE_TAG: site}),
            ],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for site in ("site-a", "site-a", "site-b")
    ]
    for launch in launches:
        output, _ = launch.communicate(timeout=120)
        assert launch.returncode == 0, output.decode(errors="replace")[-3000:]

    instance = DagsterInstance.from_config(str(home))
    try:
        runs = instance.get_runs()
        assert len(runs) == 3 and {r.status for r in runs} == {DagsterRunStatus.QUEUED}, (
            "with the QueuedRunCoordinator nothing may start before the daemon dequeues it"
        )
        daemon = _replace_option(services["daemon"]["command"], ("-w", "--workspace"), str(workspace_file))
        start(daemon, "daemon.log")

        deadline = time.monotonic() + 150
        while True:
            runs = instance.get_runs()
            if all(r.is_finished for r in runs):
                break
            assert time.monotonic() < deadline, (
                "runs did not finish:\n" + (tmp_path / "daemon.log").read_text(errors="replace")[-3000:]
            )
            time.sleep(1)
        assert {r.status for r in runs} == {DagsterRunStatus.SUCCESS}, [(r.run_id, r.status) for r in runs]

        records = {r.dagster_run.run_id: r for r in instance.get_run_records()}
        windows: dict[str, list[tuple[float, float]]] = {}
        for run in runs:
            record = records[run.run_id]
            assert record.start_time is not None and record.end_time is not None
            windows.setdefault(run.tags[SITE_TAG], []).append((record.start_time, record.end_time))
            # Launched by DefaultRunLauncher through the code server named in the workspace.
            assert json.loads(run.tags[GRPC_INFO_TAG])["port"] == port
        (a1, a2) = sorted(windows["site-a"])
        (b1,) = windows["site-b"]
        assert a2[0] >= a1[1], f"two runs of one site overlapped: {a1} {a2}"
        assert b1[0] < a1[1] and a1[0] < b1[1], f"sites did not sync in parallel: {a1} {b1}"

        # The jira_api pool got the production default limit on first use.
        info = instance.event_log_storage.get_concurrency_info("jira_api")
        expected = load_yaml(REPO / "dagster.yaml")["concurrency"]["pools"]["default_limit"]
        assert info.slot_count == expected
    finally:
        instance.dispose()
