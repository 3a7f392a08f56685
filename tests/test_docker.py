"""The docker/ deployment hangs together, checked without a Docker engine (CI has none).

docker/docker-compose.yaml is read with `yaml.safe_load`, which resolves its anchors and merge
keys the way compose does; docker/Dockerfile, docker/postgres-init/ and docker/.env.example are
parsed as text. Each test pins one way the stack could be wired wrong and still look fine:
a service missing, two Airflow services with different settings, a URL pointing at a database
nobody creates, a path in the image that the environment does not name, an undocumented setting.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, urlsplit

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
COMPOSE_FILE = DOCKER / "docker-compose.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
DOCKERIGNORE = DOCKER / "Dockerfile.dockerignore"
ENV_EXAMPLE = DOCKER / ".env.example"
INIT_DIR = DOCKER / "postgres-init"

COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
COMMON: dict[str, Any] = COMPOSE["x-airflow-common"]

AIRFLOW_SERVICES = (
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
)
# Settings a single service may add to the shared environment, and why.
SERVICE_ONLY_ENV = {
    "airflow-init": {"AIRFLOW_ADMIN_USERNAME", "AIRFLOW_ADMIN_PASSWORD", "AIRFLOW_ADMIN_EMAIL"},
    "airflow-worker": {"DUMB_INIT_SETSID"},  # warm shutdown of Celery workers
}
# Airflow 3 commands (after the image's entrypoint strips a leading `airflow`).
AIRFLOW_3_COMMANDS = {
    "airflow-apiserver": ["api-server"],
    "airflow-scheduler": ["scheduler"],
    "airflow-dag-processor": ["dag-processor"],
    "airflow-triggerer": ["triggerer"],
    "airflow-worker": ["celery", "worker"],
}
LONG_RUNNING = tuple(AIRFLOW_3_COMMANDS)

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, $VAR; `$$` is compose's escaped `$`.
INTERPOLATION = re.compile(
    r"(?<!\$)\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


# ---- helpers -------------------------------------------------------------------------------


def with_defaults(value: str) -> str:
    """`value` as compose would interpolate it with an empty .env: each variable's default."""

    def substitute(match: re.Match[str]) -> str:
        op = match.group("op") or ""
        return match.group("arg") if op.lstrip(":") == "-" else ""

    return INTERPOLATION.sub(substitute, value).replace("$$", "$")


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a mapping, whichever of compose's two forms it is written in."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


COMMON_ENV = environment(COMMON)


def url(name: str) -> SplitResult:
    """A URL from the shared Airflow environment, with default values substituted."""
    return urlsplit(with_defaults(COMMON_ENV[name]))


def raw_password(value: str) -> str:
    """The password part of a URL exactly as written in the compose file (`${VAR:-default}`)."""
    match = re.match(r"^[a-z0-9+]+://[^:/@]+:(?P<password>\$\{[^}]*\}|[^@]*)@", value)
    assert match, f"no user:password@ in {value}"
    return match.group("password")


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path → source (volume name or host path, defaults substituted)."""
    found = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            source, target = str(volume.get("source", "")), str(volume["target"])
        else:
            source, target, *_ = with_defaults(volume).split(":")
        found[with_defaults(target)] = with_defaults(source)
    return found


def is_named_volume(source: str) -> bool:
    return not source.startswith((".", "/", "~"))


def command_tokens(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    tokens = shlex.split(command) if isinstance(command, str) else [str(c) for c in command]
    return tokens[1:] if tokens[:1] == ["airflow"] else tokens


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    """Dependency → condition (compose's list form means `service_started`)."""
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, "Dockerfile ends inside a continued line"
    return instructions


INSTRUCTIONS = dockerfile_instructions()


def final_stage() -> list[tuple[str, str]]:
    """The instructions of the last build stage: the image compose runs."""
    starts = [i for i, (keyword, _) in enumerate(INSTRUCTIONS) if keyword == "FROM"]
    assert starts, "Dockerfile has no FROM"
    return INSTRUCTIONS[starts[-1] :]


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, arguments in final_stage():
        if keyword != "ENV":
            continue
        tokens = shlex.split(arguments)
        if "=" not in tokens[0]:  # legacy `ENV KEY value`
            env[tokens[0]] = arguments.split(None, 1)[1]
            continue
        for token in tokens:
            key, _, value = token.partition("=")
            env[key] = value
    return env


def dockerfile_copies() -> list[tuple[list[str], str, bool]]:
    """(sources, destination, from another stage) for every COPY/ADD in the Dockerfile."""
    copies = []
    for keyword, arguments in INSTRUCTIONS:
        if keyword not in {"COPY", "ADD"}:
            continue
        tokens = shlex.split(arguments)
        flags = [t for t in tokens if t.startswith("--")]
        paths = [t for t in tokens if not t.startswith("--")]
        copies.append((paths[:-1], paths[-1], any(f.startswith("--from") for f in flags)))
    return copies


def final_copy_destination(source: str) -> str:
    for keyword, arguments in final_stage():
        if keyword == "COPY":
            paths = [t for t in shlex.split(arguments) if not t.startswith("--")]
            if paths[:-1] == [source]:
                return paths[-1].rstrip("/")
    raise AssertionError(f"the runtime image does not COPY {source}/")


def init_script_sql() -> str:
    scripts = sorted(INIT_DIR.glob("*.sh")) + sorted(INIT_DIR.glob("*.sql"))
    assert scripts, "docker/postgres-init/ holds no init script"
    return "\n".join(path.read_text(encoding="utf-8") for path in scripts)


def created(kind: str) -> set[str]:
    """Names the init script creates: CREATE DATABASE x / CREATE ROLE x / CREATE USER x."""
    return set(re.findall(rf"CREATE\s+{kind}\s+\"?([A-Za-z_][A-Za-z0-9_]*)", init_script_sql()))


def strings(node: Any) -> list[str]:
    """Every key and value in the parsed compose file: what compose interpolates (not comments)."""
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in strings(key) + strings(value)]
    if isinstance(node, list):
        return [s for item in node for s in strings(item)]
    return [node] if isinstance(node, str) else []


def compose_variables() -> dict[str, set[str | None]]:
    """Every interpolated variable in the compose file → the defaults it is given."""
    found: dict[str, set[str | None]] = {}
    for match in (m for s in strings(COMPOSE) for m in INTERPOLATION.finditer(s)):
        name = match.group("braced") or match.group("bare")
        op = (match.group("op") or "").lstrip(":")
        found.setdefault(name, set()).add(match.group("arg") if op == "-" else None)
    return found


def env_example_variables() -> set[str]:
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Za-z_][A-Za-z0-9_]*)=", text, flags=re.MULTILINE))


# ---- services ------------------------------------------------------------------------------


def test_all_services_are_defined() -> None:
    missing = {"postgres", "redis", *AIRFLOW_SERVICES} - set(SERVICES)
    assert not missing


def test_every_service_running_the_image_is_a_known_airflow_service() -> None:
    # A new Airflow service must be added to AIRFLOW_SERVICES, so every check below covers it.
    running_image = {name for name, s in SERVICES.items() if s.get("image") == COMMON["image"]}
    assert running_image == set(AIRFLOW_SERVICES)


@pytest.mark.parametrize("name", AIRFLOW_SERVICES)
def test_airflow_service_uses_the_common_image_build_and_user(name: str) -> None:
    service = SERVICES[name]
    assert service.get("image") == COMMON["image"]
    assert service.get("build") == COMMON["build"]
    assert service.get("user") == COMMON["user"]
    assert with_defaults(COMMON["user"]).endswith(":0")  # the official image needs GID 0


def test_build_context_is_the_repository_root_and_uses_this_dockerfile() -> None:
    build = COMMON["build"]
    assert (COMPOSE_FILE.parent / build["context"]).resolve() == ROOT
    assert (ROOT / build["dockerfile"]).resolve() == DOCKERFILE


@pytest.mark.parametrize("name", AIRFLOW_SERVICES)
def test_airflow_service_has_the_shared_environment(name: str) -> None:
    env = environment(SERVICES[name])
    differing = {k: (env.get(k), v) for k, v in COMMON_ENV.items() if env.get(k) != v}
    assert not differing, f"{name} overrides the shared environment"
    extra = set(env) - set(COMMON_ENV) - SERVICE_ONLY_ENV.get(name, set())
    assert not extra, f"{name} sets what other Airflow services do not"


def test_shared_environment_is_celery_on_postgres_without_examples() -> None:
    assert COMMON_ENV["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert COMMON_ENV["AIRFLOW__CORE__LOAD_EXAMPLES"].lower() == "false"
    assert url("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN").scheme.startswith("postgresql")
    assert url("CREDITPIPE_DB_URL").scheme == "postgresql+psycopg"  # the driver etl installs
    assert "CREDITPIPE_PUBLISH_URL" in COMMON_ENV


def test_secrets_that_components_must_share_are_never_empty() -> None:
    # An empty JWT secret or API key makes each component invent its own: workers' tokens would
    # then be rejected by the api-server. A default keeps the stack working before .env is set.
    for name in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY"):
        assert with_defaults(COMMON_ENV[name]).strip(), name


@pytest.mark.parametrize("name", AIRFLOW_SERVICES)
def test_airflow_service_mounts_the_creditpipe_home_volume(name: str) -> None:
    home = COMMON_ENV["CREDITPIPE_HOME"]
    service_mounts = mounts(SERVICES[name])
    assert home in service_mounts, f"{name} does not mount {home}"
    assert service_mounts[home] == mounts(COMMON)[home]  # the same volume everywhere


def test_named_volumes_are_declared_and_bind_mounts_exist() -> None:
    declared = set(COMPOSE.get("volumes") or {})
    for name, service in SERVICES.items():
        for target, source in mounts(service).items():
            if is_named_volume(source):
                assert source in declared, f"{name}: volume {source} is not declared"
            else:
                assert (COMPOSE_FILE.parent / source).exists(), f"{name}: {source} ({target})"


def test_no_fixed_names_so_services_scale_and_projects_coexist() -> None:
    assert not [name for name, s in SERVICES.items() if "container_name" in s]
    worker = SERVICES["airflow-worker"]
    assert "ports" not in worker and "hostname" not in worker


def test_only_the_api_server_publishes_a_host_port() -> None:
    publishing = {name for name, s in SERVICES.items() if s.get("ports")}
    assert publishing == {"airflow-apiserver"}
    published = with_defaults(str(SERVICES["airflow-apiserver"]["ports"][0]))
    assert published.rsplit(":", 1)[-1] == "8080"


@pytest.mark.parametrize("name", list(AIRFLOW_3_COMMANDS))
def test_airflow_services_run_airflow_3_commands(name: str) -> None:
    assert command_tokens(SERVICES[name]) == AIRFLOW_3_COMMANDS[name]


def test_no_airflow_2_webserver() -> None:
    assert not [n for n, s in SERVICES.items() if "webserver" in command_tokens(s)]


def test_init_migrates_creates_the_admin_and_migrates_the_store_then_stops() -> None:
    init = SERVICES["airflow-init"]
    script = " ".join(command_tokens(init))
    assert "set -euo pipefail" in script  # a failed step fails the service
    order = [script.index(step) for step in (
        "airflow db migrate", "airflow users create", "creditpipe db upgrade")]  # fmt: skip
    assert order == sorted(order)
    assert str(init.get("restart", "no")) == "no"


# ---- health and start order ----------------------------------------------------------------


def test_healthchecks_exist_where_others_wait_for_health() -> None:
    for name in ("postgres", "redis", "airflow-apiserver", *LONG_RUNNING):
        assert SERVICES[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_every_dependency_exists_and_its_condition_can_be_met() -> None:
    for name, service in SERVICES.items():
        for dependency, condition in depends_on(service).items():
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"
            assert dependency != name
            if condition == "service_healthy":
                assert SERVICES[dependency].get("healthcheck"), f"{name} → {dependency}"
            elif condition == "service_completed_successfully":
                assert dependency == "airflow-init", f"{name} → {dependency} never completes"


@pytest.mark.parametrize("name", AIRFLOW_SERVICES)
def test_airflow_services_wait_for_the_databases_and_init(name: str) -> None:
    deps = depends_on(SERVICES[name])
    assert deps.get("postgres") == "service_healthy"
    assert deps.get("redis") == "service_healthy"
    if name != "airflow-init":
        assert deps.get("airflow-init") == "service_completed_successfully"


def test_workers_wait_for_the_execution_api() -> None:
    assert depends_on(SERVICES["airflow-worker"]).get("airflow-apiserver") == "service_healthy"


# ---- URLs and databases --------------------------------------------------------------------


def test_metadata_db_is_the_one_postgres_is_initialised_with() -> None:
    postgres = environment(SERVICES["postgres"])
    for name in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__RESULT_BACKEND"):
        parsed = url(name)
        assert parsed.hostname == "postgres" and (parsed.port or 5432) == 5432, name
        assert parsed.path.lstrip("/") == postgres["POSTGRES_DB"], name
        assert parsed.username == postgres["POSTGRES_USER"], name
        assert raw_password(COMMON_ENV[name]) == postgres["POSTGRES_PASSWORD"], name


def test_store_db_is_created_by_the_init_script() -> None:
    store = url("CREDITPIPE_DB_URL")
    assert store.hostname == "postgres" and (store.port or 5432) == 5432
    database = store.path.lstrip("/")
    assert database in created("DATABASE")
    assert database != url("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN").path.lstrip("/")
    assert store.username in created("ROLE") | created("USER")
    # The script reads the password postgres is given, which must be the URL's password.
    postgres = environment(SERVICES["postgres"])
    assert raw_password(COMMON_ENV["CREDITPIPE_DB_URL"]) == postgres["CREDITPIPE_DB_PASSWORD"]
    assert "$CREDITPIPE_DB_PASSWORD" in init_script_sql()


def test_init_script_is_mounted_where_postgres_runs_it() -> None:
    postgres_mounts = mounts(SERVICES["postgres"])
    source = postgres_mounts.get("/docker-entrypoint-initdb.d")
    assert source and (COMPOSE_FILE.parent / source).resolve() == INIT_DIR
    for script in INIT_DIR.glob("*.sh"):
        assert script.stat().st_mode & 0o111, f"{script.name} is not executable"


def test_broker_is_the_redis_service() -> None:
    broker = url("AIRFLOW__CELERY__BROKER_URL")
    assert broker.scheme == "redis" and broker.hostname == "redis"


def test_execution_api_url_is_the_api_server_on_the_compose_network() -> None:
    execution = url("AIRFLOW__CORE__EXECUTION_API_SERVER_URL")
    assert execution.hostname == "airflow-apiserver"
    assert execution.port == 8080 and execution.path == "/execution/"


# ---- the image -----------------------------------------------------------------------------


def test_image_is_official_airflow_in_the_projects_airflow_and_python_range() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    airflow_spec = next(
        Requirement(r).specifier
        for r in project["dependencies"]
        if Requirement(r).name == "apache-airflow"
    )
    bases = {args.split()[0] for keyword, args in INSTRUCTIONS if keyword == "FROM"}
    assert len(bases) == 1, "the wheel is built on the same image (and Python) it runs on"
    base = bases.pop()
    match = re.fullmatch(r"apache/airflow:(?P<airflow>[\d.]+)-python(?P<python>[\d.]+)", base)
    assert match, f"not an official apache/airflow:<version>-python<version> tag: {base}"
    assert Version(match["airflow"]) in airflow_spec
    assert Version(match["airflow"]).release[:2] == (3, 3)
    assert Version(match["python"] + ".0") in SpecifierSet(project["requires-python"])


def test_image_paths_match_the_compose_environment() -> None:
    env = dockerfile_env()
    for name in ("CREDITPIPE_HOME", "CREDITPIPE_SCHEMAS", "CREDITPIPE_EXPECTATIONS",
                 "AIRFLOW__CORE__DAGS_FOLDER"):  # fmt: skip
        assert env.get(name) == COMMON_ENV[name], name
    assert final_copy_destination("schemas") == COMMON_ENV["CREDITPIPE_SCHEMAS"]
    assert final_copy_destination("expectations") == COMMON_ENV["CREDITPIPE_EXPECTATIONS"]
    assert final_copy_destination("dags") == COMMON_ENV["AIRFLOW__CORE__DAGS_FOLDER"]
    # The home folder exists in the image, so a fresh named volume inherits its ownership.
    runs = " ".join(args for keyword, args in final_stage() if keyword == "RUN")
    assert COMMON_ENV["CREDITPIPE_HOME"] in runs


def test_image_installs_creditpipe_without_moving_airflow_and_runs_as_airflow() -> None:
    runs = [args for keyword, args in final_stage() if keyword == "RUN"]
    install = next(r for r in runs if "pip install" in r)
    assert '"apache-airflow==${AIRFLOW_VERSION}"' in install and "creditpipe" in install
    users = [args for keyword, args in final_stage() if keyword == "USER"]
    assert users and users[-1] == "airflow"


def test_every_copied_path_exists_and_reaches_the_build() -> None:
    ignore = [line.strip() for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()]
    ignore = [line for line in ignore if line and not line.startswith("#")]
    for sources, _, from_stage in dockerfile_copies():
        if from_stage:
            continue
        for source in sources:
            assert (ROOT / source).exists(), source
            if "*" in ignore:  # an allow-list: each copied top-level path must be let back in
                assert f"!{source.split('/')[0]}" in ignore, source


# ---- settings ------------------------------------------------------------------------------


def test_every_compose_variable_is_documented_in_env_example() -> None:
    used, documented = set(compose_variables()), env_example_variables()
    assert used - documented == set(), "used in docker-compose.yaml, missing from .env.example"
    assert documented - used == set(), "in .env.example but read by nothing"


def test_each_variable_has_one_default() -> None:
    # e.g. a password defaulted differently in postgres and in the URL would break a fresh start.
    conflicting = {k: v for k, v in compose_variables().items() if len(v) > 1}
    assert not conflicting


def test_commands_read_container_variables_not_host_ones() -> None:
    # Compose interpolates `$VAR` in a command on the host, so a command meant to read the
    # container's environment must write `$$VAR`; settings reach commands via `environment`.
    for name, service in SERVICES.items():
        text = strings(service.get("command")) + strings(service.get("healthcheck"))
        unescaped = [m.group(0) for s in text for m in INTERPOLATION.finditer(s)]
        assert not unescaped, f"{name}: {unescaped}"
