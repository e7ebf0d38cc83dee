"""Deployment files stay valid and in step: Procfile, Dockerfile, docker-compose.yml, .env.example.

Everything here runs without a Docker engine. ``docker compose config -q`` is run as well
when the client and its compose plugin are installed, and skipped otherwise.

tests/data/compose-spec.json is a verbatim copy of the official Compose Specification
schema: repository compose-spec/compose-go, path schema/compose-spec.json, commit
771cf879091bf1079d4a672dc221c780cb19cc23 (it declares JSON Schema draft 2019-09).
When updating it, copy the file unchanged and update the commit above.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
PROCFILE = ROOT / "Procfile"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
SCHEMA_FILE = Path(__file__).resolve().parent / "data" / "compose-spec.json"

EXPECTED_PROCESS_TYPES = {
    "release", "web", "worker_ingest", "worker_identity", "worker_notify", "worker_push", "worker_classify",
    "worker_views", "worker_webhooks", "worker_reports", "worker_backfill", "worker_b2b", "listener", "scheduler",
}
# Procfile process type -> compose service, where the names differ.
SERVICE_FOR_PROCESS = {"release": "migrate"}
# Queues that must have a consumer; each one is consumed by exactly one worker family.
EXPECTED_QUEUES = {"ingest", "identity", "notify", "push", "classify", "views", "webhooks", "reports", "backfill", "b2b"}  # every queue an actor in tasks/ consumes
# Processes that must never run more than once.
SINGLETONS = ("scheduler", "listener")
REQUIRED_SECRETS = ("POSTGRES_PASSWORD", "JWT_SECRET")
APP_IMAGE_PREFIX = "cannect-backend:"


# ---------------------------------------------------------------------------- helpers

def _load_procfile() -> dict[str, str]:
    processes: dict[str, str] = {}
    for lineno, line in enumerate(PROCFILE.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9_-]+):\s*(\S.*)", line)
        assert match, f"Procfile line {lineno} is not 'type: command': {line!r}"
        name, command = match.groups()
        assert name not in processes, f"Procfile defines {name!r} twice"
        processes[name] = command
    return processes


def _load_env_example() -> tuple[set[str], dict[str, str]]:
    """Names documented in .env.example (set or commented out) and the values set."""
    documented: set[str] = set()
    values: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$", line.strip())
        if not match:
            continue
        commented, name, value = match.groups()
        documented.add(name)
        if not commented:
            assert name not in values, f".env.example sets {name} twice"
            values[name] = value
    return documented, values


# $$ (a literal dollar), ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?err},
# ${NAME?err}, $NAME: the interpolation forms of the Compose specification.
_INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


class InterpolationError(Exception):
    pass


def _strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def _variables(node) -> set[str]:
    names = set()
    for text in _strings(node):
        for match in _INTERPOLATION.finditer(text):
            name = match.group("braced") or match.group("named")
            if name:
                names.add(name)
    return names


def _interpolate(node, env: dict[str, str]):
    """Resolve variables the way ``docker compose`` does (values only, not keys)."""
    if isinstance(node, dict):
        return {key: _interpolate(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [_interpolate(value, env) for value in node]
    if not isinstance(node, str):
        return node

    def replace(match: re.Match) -> str:
        if match.group("escaped"):
            return "$"
        name = match.group("braced") or match.group("named")
        op, arg = match.group("op"), match.group("arg")
        value = env.get(name)
        missing = value is None or (value == "" and op is not None and op.startswith(":"))
        if op and op.endswith("?") and missing:
            raise InterpolationError(f"{name}: {arg}")
        if op and op.endswith("-") and missing:
            return _interpolate(arg, env)
        return value or ""

    return _INTERPOLATION.sub(replace, node)


def _example_env() -> dict[str, str]:
    """The values of .env.example, with placeholders for the secrets left blank there."""
    _, values = _load_env_example()
    env = dict(values)
    for name in REQUIRED_SECRETS:
        env[name] = env.get(name) or "test-" + name.lower()
    return env


def _schema_validator():
    with SCHEMA_FILE.open() as fh:
        schema = json.load(fh)
    # The file spells its draft as "http://json-schema.org/draft/2019-09/schema#", which
    # jsonschema does not recognise, so name the validator class explicitly.
    validator_class = jsonschema.Draft201909Validator
    validator_class.check_schema(schema)
    checker = jsonschema.FormatChecker(formats=())

    @checker.checks("duration")
    def _duration(value) -> bool:  # Go durations, as Compose accepts them
        return not isinstance(value, str) or bool(
            re.fullmatch(r"(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+", value)
        )

    return validator_class(schema, format_checker=checker)


def _app_services(services: dict) -> dict[str, dict]:
    return {
        name: svc for name, svc in services.items()
        if str(svc.get("image", "")).startswith(APP_IMAGE_PREFIX)
    }


def _queues(command: list[str]) -> list[str]:
    assert "--queues" in command, f"worker command has no --queues: {command}"
    queues = []
    for arg in command[command.index("--queues") + 1:]:
        if arg.startswith("-"):
            break
        queues.append(arg)
    return queues


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def compose() -> dict:
    with COMPOSE_FILE.open() as fh:
        return yaml.safe_load(fh)


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict]:
    return compose["services"]


@pytest.fixture(scope="module")
def procfile() -> dict[str, str]:
    return _load_procfile()


@pytest.fixture(scope="module")
def validator():
    return _schema_validator()


# ----------------------------------------------------------------------------- compose

def test_compose_has_no_obsolete_version_key(compose):
    assert "version" not in compose


@pytest.mark.parametrize("interpolated", [False, True], ids=["raw", "interpolated"])
def test_compose_matches_official_schema(compose, validator, interpolated):
    document = _interpolate(compose, _example_env()) if interpolated else compose
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors
    )


def test_schema_rejects_unknown_keys(validator):
    """Guard against a schema copy that silently accepts anything."""
    bad = {"services": {"web": {"image": "x", "helthcheck": {"test": ["CMD", "true"]}}}}
    assert list(validator.iter_errors(bad))


@pytest.mark.parametrize("secret", REQUIRED_SECRETS)
def test_required_secrets_stop_compose_when_missing(compose, secret):
    env = _example_env()
    _interpolate(compose, env)  # complete: no error
    for blank in ({k: v for k, v in env.items() if k != secret}, {**env, secret: ""}):
        with pytest.raises(InterpolationError, match=secret):
            _interpolate(compose, blank)


def test_urls_point_at_the_compose_services(compose, services):
    env = _interpolate(services["web"]["environment"], _example_env())
    assert re.fullmatch(r"postgresql://[^:@/]+:[^@/]+@postgres:5432/\w+", env["DATABASE_URL"])
    assert re.fullmatch(r"redis://redis:6379(/\d+)?", env["REDIS_URL"])
    assert {"postgres", "redis"} <= set(services)


def test_every_procfile_process_has_a_service_running_the_same_command(procfile, services):
    assert set(procfile) == EXPECTED_PROCESS_TYPES
    for process, command in procfile.items():
        service = SERVICE_FOR_PROCESS.get(process, process)
        assert service in services, f"Procfile {process!r} has no compose service {service!r}"
        assert services[service].get("command") == shlex.split(command), (
            f"service {service!r} and Procfile {process!r} run different commands"
        )


def test_every_queue_has_exactly_one_worker_family(procfile):
    consumed: dict[str, str] = {}
    for process, command in procfile.items():
        argv = shlex.split(command)
        if argv[:2] not in (["dramatiq", "tasks"], ["cannect", "worker"]):
            continue
        assert process.startswith("worker_"), f"{process} runs dramatiq but is not named worker_*"
        for queue in _queues(argv):
            assert queue not in consumed, f"queue {queue!r} consumed by {consumed[queue]} and {process}"
            consumed[queue] = process
    assert EXPECTED_QUEUES <= set(consumed), f"no worker for {EXPECTED_QUEUES - set(consumed)}"


def test_every_long_running_service_has_a_healthcheck(services):
    for name, svc in services.items():
        one_shot = svc.get("restart") == "no"
        if name == "migrate":
            assert one_shot, "migrate must run once, not restart"
            assert "healthcheck" not in svc
            continue
        if one_shot:
            continue
        assert svc.get("restart") == "unless-stopped", f"{name}: restart policy"
        check = svc.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), f"{name}: no healthcheck"
        test = check["test"]
        assert not (isinstance(test, list) and test[:1] == ["NONE"]), f"{name}: healthcheck disabled"


def test_app_services_wait_for_migrate(services):
    apps = _app_services(services)
    assert "migrate" in apps and len(apps) == len(EXPECTED_PROCESS_TYPES)
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name, svc in apps.items():
        if name == "migrate":
            continue
        depends = svc.get("depends_on", {})
        assert depends.get("migrate", {}).get("condition") == "service_completed_successfully", name
        assert depends.get("redis", {}).get("condition") == "service_healthy", name


def test_web_is_published_and_checked_without_curl(services):
    web = services["web"]
    assert any(str(p).endswith(":${PORT:-3000}") or str(p).endswith(":3000") for p in web["ports"])
    test = web["healthcheck"]["test"]
    assert test[:2] == ["CMD", "python"] and "urllib.request" in test[-1] and "/health" in test[-1]
    assert "curl" not in json.dumps(test) and "wget" not in json.dumps(test)
    assert services["listener"]["healthcheck"]["test"] == ["CMD", "cannect", "status", "--check", "120"]


@pytest.mark.parametrize("name", SINGLETONS)
def test_singletons_are_not_scaled(services, name):
    svc = services[name]
    assert svc.get("scale", 1) == 1
    deploy = svc.get("deploy") or {}
    assert deploy.get("replicas", 1) == 1
    assert deploy.get("mode", "replicated") == "replicated"


def test_redis_persists_queues_and_postgres_keeps_its_data(compose, services):
    redis_cmd = services["redis"]["command"]
    assert redis_cmd[0] == "redis-server"
    assert redis_cmd[redis_cmd.index("--appendonly") + 1] == "yes"
    assert "redis-cli" in services["redis"]["healthcheck"]["test"]
    assert "pg_isready" in json.dumps(services["postgres"]["healthcheck"]["test"])
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")
    named = set(compose.get("volumes") or {})
    for svc, target in (("postgres", "/var/lib/postgresql/data"), ("redis", "/data")):
        sources = [v.split(":")[0] for v in services[svc]["volumes"] if v.endswith(":" + target)]
        assert sources and sources[0] in named, f"{svc}: {target} is not on a named volume"


def test_common_parts_come_from_an_extension_field():
    text = COMPOSE_FILE.read_text()
    assert re.search(r"^x-app:\s*&app\b", text, re.M)
    assert text.count("<<: *app") >= 2


# ------------------------------------------------------------------------ .env.example

def test_env_example_documents_every_variable(services):
    documented, _ = _load_env_example()
    used = _variables(services)
    for svc in services.values():  # pass-through entries ("NAME:" with no value)
        env = svc.get("environment") or {}
        if isinstance(env, dict):
            used |= {key for key, value in env.items() if value is None}
        else:
            used |= {item for item in env if "=" not in item}
    assert used, "no variables found: the parser is broken"
    assert not used - documented, f"missing from .env.example: {sorted(used - documented)}"


def test_env_example_documents_every_setting(services):
    from cannect.config import Settings

    documented, _ = _load_env_example()
    fields = {name.upper() for name in Settings.model_fields}
    assert not fields - documented, f"settings missing from .env.example: {sorted(fields - documented)}"
    web_env = services["web"]["environment"]
    assert not fields - set(web_env), f"settings never passed to containers: {sorted(fields - set(web_env))}"


def test_env_example_holds_no_secrets():
    _, values = _load_env_example()
    for name, value in values.items():
        if re.search(r"PASSWORD|SECRET|PRIVATE|API_KEY|TOKEN", name):
            assert value == "", f".env.example must leave {name} empty"


# -------------------------------------------------------------------------- Dockerfile

def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def test_dockerfile_builds_a_slim_non_root_image_running_web(procfile):
    instructions = _dockerfile_instructions()
    froms = [rest.split()[0] for kw, rest in instructions if kw == "FROM"]
    assert froms and all(image == "python:3.11-slim" for image in froms), froms
    last_stage = instructions[max(i for i, (kw, _) in enumerate(instructions) if kw == "FROM"):]
    users = [rest for kw, rest in last_stage if kw == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "final stage must not run as root"
    cmds = [rest for kw, rest in last_stage if kw == "CMD"]
    assert cmds and json.loads(cmds[-1]) == shlex.split(procfile["web"])
    assert any(kw == "RUN" and re.search(r"pip install\b.*\s\.(\s|$)", rest) for kw, rest in instructions)
    assert not any(kw == "HEALTHCHECK" for kw, _ in instructions), (
        "an image HEALTHCHECK would apply to workers too; healthchecks live in docker-compose.yml"
    )


def test_dockerfile_copies_every_package(procfile):
    with (ROOT / "pyproject.toml").open("rb") as fh:
        pyproject = tomllib.load(fh)
    patterns = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    copied = {rest.split()[0] for kw, rest in _dockerfile_instructions() if kw == "COPY"}
    for pattern in patterns:
        package = pattern.rstrip("*").rstrip(".")
        assert package in copied, f"Dockerfile does not COPY the {package!r} package"
    readme = pyproject["project"].get("readme")
    if isinstance(readme, str):
        assert readme in copied, f"pyproject names {readme} as readme; pip install . needs it"


# ---------------------------------------------------------------- docker compose config

def _compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if docker is None:
        return None
    try:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return [docker, "compose"] if probe.returncode == 0 else None


def test_docker_compose_config_accepts_the_file():
    cli = _compose_cli()
    if cli is None:
        pytest.skip("docker client or its compose plugin is not installed")
    env = {**os.environ, **_example_env()}
    result = subprocess.run(
        [*cli, "--project-directory", str(ROOT), "-f", str(COMPOSE_FILE),
         "--env-file", str(ENV_EXAMPLE), "config", "-q"],
        capture_output=True, text=True, timeout=60, env=env,
    )
    assert result.returncode == 0, result.stderr
