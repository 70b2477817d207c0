"""The container and CI/CD files, checked without a Docker engine.

- docker-compose.yml: every service has an image or a build; the app roles share one build; the
  app instances and the worker have health checks; migrations run once, before any instance;
  every environment variable given to the app is one the code reads; the topology is `make
  stack`'s (two instances behind nginx least_conn, Prometheus scraping each one and the worker);
  `docker compose config` accepts it when the Compose plugin is installed.
- The PostgreSQL cluster in compose: etcd and three Patroni nodes built from one image
  (docker/patroni/Dockerfile), each rendering the same template, patroni/patroni.yml.in, with
  docker/patroni/entrypoint.sh (run for real here, with a stand-in for Patroni; its
  post_bootstrap hook runs against the test PostgreSQL); the apps reach it through libpq
  multi-host URLs with target_session_attrs.
- Dockerfile: multi-stage, a slim runtime stage running as a non-root user.
- docker/nginx.conf and docker/prometheus.yml: the same directives and jobs as the top-level
  nginx.conf and prometheus.yml of `make stack`, apart from addresses and file paths.
- docker/entrypoint.sh and docker/deploy.sh: run for real, with stand-ins
  for the programs they start (gunicorn, flask, huey_consumer, ssh, docker).
- .github/workflows/ci.yml: the jobs, their triggers, services and deploy parameters.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import time
from functools import cache
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
DEPLOY = ROOT / "docker" / "deploy.sh"
DOCKER_NGINX = ROOT / "docker" / "nginx.conf"
STACK_NGINX = ROOT / "nginx.conf"
DOCKER_PROMETHEUS = ROOT / "docker" / "prometheus.yml"
STACK_PROMETHEUS = ROOT / "prometheus.yml"
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
PATRONI_DOCKERFILE = ROOT / "docker" / "patroni" / "Dockerfile"
PATRONI_ENTRYPOINT = ROOT / "docker" / "patroni" / "entrypoint.sh"
PATRONI_TEMPLATE = ROOT / "patroni" / "patroni.yml.in"
PATRONI_REQUIREMENTS = ROOT / "patroni" / "requirements.txt"

APP_ROLES = ("web", "worker", "migrate")
STACK_APP_INSTANCES = 2  # scripts/stack.sh: STACK_APP_PORTS="8001 8002"
DATABASE_NODES = ("pg1", "pg2", "pg3")  # scripts/patroni.sh: three nodes


# The conftest's autouse Redis flush needs the test database; these checks need neither.
@pytest.fixture(autouse=True)
def _clean_redis() -> None:
    return None


# -- helpers ----------------------------------------------------------------------------------


@cache
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def services() -> dict[str, dict]:
    return compose()["services"]


def role(service: dict) -> str | None:
    command = service.get("command")
    if isinstance(command, list) and command and command[0] in APP_ROLES:
        return command[0]
    return None


def app_services() -> dict[str, dict]:
    """Every service that runs the app's image: web instances, the worker, the migration job."""
    return {name: s for name, s in services().items() if role(s)}


def web_instances() -> dict[str, dict]:
    return {name: s for name, s in services().items() if role(s) == "web"}


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: str(value) for key, value in env.items()}


def port_of(name: str) -> int:
    return int(environment(services()[name]).get("PORT", 8000))


def mounts(service: dict) -> dict[str, str]:
    """container path -> host path (relative to the repository) of the bind mounts."""
    found = {}
    for volume in service.get("volumes", []):
        parts = volume.split(":")
        if parts[0].startswith("."):
            found[parts[1]] = os.path.normpath(parts[0])
    return found


def env_names_read_by(path: Path) -> set[str]:
    text = path.read_text()
    patterns = [
        r"env_(?:str|int|bool)\(\s*\"([A-Z][A-Z0-9_]*)\"",
        r"os\.environ(?:\.get)?[(\[]\s*[\"']([A-Z][A-Z0-9_]*)[\"']",
        r"\$\{([A-Z][A-Z0-9_]*)[:}=?+-]",
    ]
    return {name for pattern in patterns for name in re.findall(pattern, text)}


def dockerfile_stages(path: Path = DOCKERFILE) -> list[dict]:
    """A Dockerfile's stages: {"base", "name", "lines"} (instructions, continuations joined)."""
    text = path.read_text()
    args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", text, re.M))
    instructions = []
    for raw in re.sub(r"\\\n", " ", text).splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            instructions.append(line)
    stages: list[dict] = []
    for line in instructions:
        match = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.I)
        if match:
            base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), match.group(1))
            stages.append({"base": base, "name": match.group(2), "lines": []})
        elif stages:
            stages[-1]["lines"].append(line)
    return stages


# -- docker-compose.yml -----------------------------------------------------------------------


def test_every_service_has_an_image_or_a_build():
    for name, service in services().items():
        assert service.get("image") or service.get("build"), f"{name}: neither image nor build"
        if ":" in service.get("image", "") and "${" not in service["image"]:
            assert not service["image"].endswith(":latest"), f"{name}: pin the image's tag"


def test_the_app_roles_share_one_build_and_one_image():
    apps = app_services()
    assert {role(s) for s in apps.values()} == set(APP_ROLES), "web instances, a worker, a migrate job"
    builds = {repr(s.get("build")) for s in apps.values()}
    images = {s.get("image") for s in apps.values()}
    assert len(builds) == 1 and len(images) == 1, (builds, images)
    build = next(iter(apps.values()))["build"]
    assert build["context"] == "." and build.get("target") == "runtime"


def test_the_app_instances_and_the_worker_have_health_checks():
    for name, service in services().items():
        if role(service) in ("web", "worker"):
            check = service.get("healthcheck") or {}
            assert not check.get("disable"), name
            test = check.get("test") or []
            assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name}: no health check"
            if role(service) == "web":
                assert "/healthz" in " ".join(test), name
    for name in ("etcd", *DATABASE_NODES, "redis"):
        assert services()[name]["healthcheck"]["test"], name


def test_migrations_run_once_before_any_instance_or_the_worker():
    migrate = [name for name, s in app_services().items() if role(s) == "migrate"]
    assert migrate == ["migrate"]
    assert services()["migrate"].get("restart") == "no"
    for name, service in app_services().items():
        if role(service) == "migrate":
            continue
        depends = service["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["redis"]["condition"] == "service_healthy", name
        if role(service) == "web":
            # Two instances must not race to migrate: the entrypoint skips it here.
            assert environment(service)["MIGRATE_ON_START"] == "false", name
    for name, service in app_services().items():
        # Every app container, the migration job included, waits for the whole cluster.
        for node in DATABASE_NODES:
            assert service["depends_on"][node]["condition"] == "service_healthy", f"{name} -> {node}"


def test_the_app_is_given_only_variables_the_code_reads():
    known = (
        env_names_read_by(ROOT / "ecommerce" / "config.py")
        | env_names_read_by(ROOT / "gunicorn.conf.py")
        | env_names_read_by(ENTRYPOINT)
    )
    assert {"DATABASE_URL", "WORKER_METRICS_PORT", "WEB_CONCURRENCY", "MIGRATE_ON_START"} <= known
    for name, service in app_services().items():
        unknown = set(environment(service)) - known
        assert not unknown, f"{name}: {sorted(unknown)} are read by neither the app nor the entrypoint"


def test_the_app_runs_in_production_mode_and_refuses_to_start_without_secrets():
    for name, service in app_services().items():
        env = environment(service)
        assert env["APP_ENV"] == "production", name
        for secret in ("SECRET_KEY", "JWT_SECRET_KEY"):
            assert env[secret].startswith(f"${{{secret}:?"), f"{name}: {secret} must be required"
        assert "${POSTGRES_PASSWORD:?" in env["DATABASE_URL"], name
        assert env["REDIS_URL"].startswith("redis://redis:"), name
        assert env["MAIL_SERVER"] == "mailpit", name
    grafana = environment(services()["grafana"])
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")


def test_the_topology_is_make_stacks():
    instances = web_instances()
    assert len(instances) == STACK_APP_INSTANCES
    for name, service in instances.items():
        env = environment(service)
        assert env["INSTANCE_NAME"] == name
        assert env["TRUSTED_PROXY_HOPS"] == "1", "nginx is one trusted hop"
    ports = sorted(port_of(name) for name in instances)
    assert len(set(ports)) == len(ports), "each instance keeps a port of its own (nginx's X-Upstream map)"
    stack = STACK_NGINX.read_text() if STACK_NGINX.exists() else None
    if stack is not None:
        upstream = nginx_block(nginx_parse(stack), "http", "upstream")
        stack_ports = sorted(int(d[1][0].rsplit(":", 1)[1]) for d in upstream if d[0] == "server")
        assert ports == stack_ports, "the same instances and ports as make stack"
    worker = environment(services()["worker"])
    assert worker["WORKER_METRICS_PORT"] == "9101"


def test_only_the_entry_points_are_published_and_the_tools_on_loopback():
    published = {name: s["ports"] for name, s in services().items() if s.get("ports")}
    assert set(published) == {"nginx", "grafana", "prometheus", "mailpit"}
    for name in ("grafana", "prometheus", "mailpit"):
        for port in published[name]:
            assert port.startswith("127.0.0.1:"), f"{name}: {port} is not bound to 127.0.0.1"
    assert published["nginx"] == ["${HTTP_BIND:-127.0.0.1}:${HTTP_PORT:-8080}:8080"]


def test_nginx_in_compose_balances_every_instance_with_least_conn():
    nginx = services()["nginx"]
    assert mounts(nginx) == {"/etc/nginx/nginx.conf": "docker/nginx.conf", "/srv/storefront": "storefront"}
    # The pictures the instances write, on the volume they write them to.
    assert "media:/srv/media:ro" in nginx["volumes"]
    assert all("media:/app/media" in services()[name]["volumes"] for name in web_instances())
    roots = {d[1][0] for d in nginx_lines_flat(nginx_parse(DOCKER_NGINX.read_text())) if d[0] == "root"}
    assert roots == {"/srv/storefront"}  # the storefront, served from its mount
    assert set(nginx["depends_on"]) == set(web_instances())
    upstream = nginx_block(nginx_parse(DOCKER_NGINX.read_text()), "http", "upstream")
    assert ("least_conn", []) in [(d[0], d[1]) for d in upstream]
    servers = {d[1][0] for d in upstream if d[0] == "server"}
    assert servers == {f"{name}:{port_of(name)}" for name in web_instances()}


def test_prometheus_in_compose_scrapes_every_instance_and_the_worker():
    prometheus = services()["prometheus"]
    bound = mounts(prometheus)
    assert bound["/etc/prometheus/prometheus.yml"] == "docker/prometheus.yml"
    config = yaml.safe_load(DOCKER_PROMETHEUS.read_text())
    rules = config["rule_files"]
    assert rules and all(bound.get(path) == "prometheus/alerts.yml" for path in rules)

    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    api_targets = {
        target: group.get("labels", {}).get("instance_name")
        for group in jobs["ecommerce-api"]["static_configs"]
        for target in group["targets"]
    }
    assert api_targets == {f"{name}:{port_of(name)}": name for name in web_instances()}
    worker_port = environment(services()["worker"])["WORKER_METRICS_PORT"]
    worker_targets = [t for g in jobs["ecommerce-worker"]["static_configs"] for t in g["targets"]]
    assert worker_targets == [f"worker:{worker_port}"]

    if not STACK_PROMETHEUS.exists():
        pytest.skip("prometheus.yml (make stack) is not there yet: nothing to compare the jobs with")
    stack = yaml.safe_load(STACK_PROMETHEUS.read_text())

    def shape(cfg: dict) -> dict:
        # The jobs with their settings and labels, without the addresses.
        return {
            job["job_name"]: (
                {k: v for k, v in job.items() if k != "static_configs"},
                sorted(str(g.get("labels", {})) for g in job["static_configs"]),
            )
            for job in cfg["scrape_configs"]
        }

    assert shape(config) == shape(stack)
    assert config["global"] == stack["global"]


def test_prometheus_config_passes_promtool(tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed")
    text = DOCKER_PROMETHEUS.read_text()
    for path in yaml.safe_load(text)["rule_files"]:
        text = text.replace(path, str(ROOT / mounts(services()["prometheus"])[path]))
    config = tmp_path / "prometheus.yml"
    config.write_text(text)
    result = subprocess.run([promtool, "check", "config", str(config)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_in_compose_gets_the_provisioning_and_the_dashboards():
    if not (ROOT / "grafana" / "provisioning").is_dir():
        pytest.skip("grafana/provisioning is not there yet")
    grafana = services()["grafana"]
    bound = mounts(grafana)
    assert bound["/etc/grafana/provisioning"] == "grafana/provisioning"
    for provider_file in (ROOT / "grafana" / "provisioning" / "dashboards").glob("*.y*ml"):
        for provider in yaml.safe_load(provider_file.read_text())["providers"]:
            path = provider["options"]["path"]
            assert bound.get(path) == "grafana/dashboards", f"mount grafana/dashboards at {path}"
    for source_file in (ROOT / "grafana" / "provisioning" / "datasources").glob("*.y*ml"):
        # The values only: Grafana expands $VAR / ${VAR} from its environment (comments aside).
        values = yaml.safe_dump(yaml.safe_load(source_file.read_text()))
        for name in re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)", values):
            assert name in environment(grafana), f"{source_file.name} reads {name}"
    if "PROMETHEUS_URL" in environment(grafana):
        assert environment(grafana)["PROMETHEUS_URL"] == "http://prometheus:9090"


def test_docker_compose_config_accepts_the_file(tmp_path):
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("docker is not installed")
    version = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
    if version.returncode != 0:
        reason = (version.stderr or version.stdout).strip().splitlines()[0]
        pytest.skip(f"the Docker Compose plugin is not installed (`docker compose version`: {reason})")
    # Only the variables given here: no .env file, nothing from the calling shell's secrets.
    empty = tmp_path / "empty.env"
    empty.write_text("")
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "DOCKER_CONFIG", "DOCKER_HOST")}
    env.update(
        POSTGRES_PASSWORD="compose-config-check",
        POSTGRES_REPLICATION_PASSWORD="compose-config-check",
        POSTGRES_REWIND_PASSWORD="compose-config-check",
        GRAFANA_ADMIN_PASSWORD="compose-config-check",
    )
    command = [docker, "compose", "--project-directory", str(ROOT), "--env-file", str(empty)]
    command += ["-f", str(COMPOSE_FILE), "config", "--quiet"]
    refused = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert refused.returncode != 0 and "SECRET_KEY" in refused.stderr, "compose must refuse without secrets"
    env.update(SECRET_KEY="s" * 48, JWT_SECRET_KEY="j" * 48)
    accepted = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert accepted.returncode == 0, accepted.stderr


# -- docker-compose.yml: the PostgreSQL cluster -----------------------------------------------


def database_nodes() -> dict[str, dict]:
    """The services built from the Patroni image."""
    return {
        name: s
        for name, s in services().items()
        if isinstance(s.get("build"), dict) and s["build"].get("dockerfile") == "docker/patroni/Dockerfile"
    }


def interpolated(value: str, variables: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} against *variables*."""

    def one(match: re.Match) -> str:
        name, operator, argument = match.group(1), match.group(2), match.group(3) or ""
        if variables.get(name):
            return variables[name]
        if operator == "?":
            raise KeyError(f"{name}: {argument}")
        return argument if operator == "-" else ""

    return re.sub(r"\$\{(\w+)(?::([-?])([^}]*))?\}", one, value)


def entrypoint_defaults() -> dict[str, str]:
    """NAME -> default of every `NAME=${NAME:-default}` in docker/patroni/entrypoint.sh."""
    return dict(re.findall(r"^\s*(\w+)=\$\{\1:-([^}]*)\}\s*$", PATRONI_ENTRYPOINT.read_text(), re.M))


def volume_mounts(service: dict) -> dict[str, str]:
    """container path -> named volume."""
    found = {}
    for volume in service.get("volumes", []):
        parts = volume.split(":")
        if not parts[0].startswith((".", "/")):
            found[parts[1]] = parts[0]
    return found


def test_the_database_is_three_patroni_nodes_and_etcd():
    assert "postgres" not in services(), "the single PostgreSQL is replaced by the cluster"
    nodes = database_nodes()
    assert tuple(sorted(nodes)) == DATABASE_NODES
    assert len({repr(s["build"]) for s in nodes.values()}) == 1
    assert len({s["image"] for s in nodes.values()}) == 1
    assert next(iter(nodes.values()))["build"]["context"] == "."

    envs = {name: environment(s) for name, s in nodes.items()}
    for name, env in envs.items():
        assert env["NODE_NAME"] == name, "the member's name is its host name on the compose network"
        assert "NODE_HOST" not in env or env["NODE_HOST"] == name
        assert env["ETCD_HOSTS"] == "etcd:2379"
        assert nodes[name]["depends_on"]["etcd"]["condition"] == "service_healthy"
        others = {k: v for k, v in env.items() if k != "NODE_NAME"}
        assert others == {k: v for k, v in envs["pg1"].items() if k != "NODE_NAME"}, "one configuration"
        for secret, variable in (
            ("SUPERUSER_PASSWORD", "POSTGRES_PASSWORD"),
            ("REPLICATION_PASSWORD", "POSTGRES_REPLICATION_PASSWORD"),
            ("REWIND_PASSWORD", "POSTGRES_REWIND_PASSWORD"),
        ):
            assert env[secret].startswith(f"${{{variable}:?"), f"{name}: {secret} must be required"

    # Data on a volume of each node's own, under the entrypoint's DATA_DIR; one shared WAL archive.
    defaults = entrypoint_defaults()
    data_volumes, archive_volumes = set(), set()
    for service in nodes.values():
        mounted = volume_mounts(service)
        data_mount = next(path for path in mounted if defaults["DATA_DIR"].startswith(path + "/"))
        data_volumes.add(mounted[data_mount])
        archive_volumes.add(mounted[defaults["ARCHIVE_DIR"]])
    assert len(data_volumes) == len(nodes) and len(archive_volumes) == 1
    assert data_volumes | archive_volumes <= set(compose()["volumes"])


def test_etcd_listens_on_the_network_and_advertises_its_service_name():
    etcd = services()["etcd"]
    image, _, tag = etcd["image"].rpartition(":")
    assert image.endswith("/etcd") and re.fullmatch(r"v3\.5\.\d+", tag), "a pinned etcd 3.5"
    flags = dict(arg.split("=", 1) for arg in etcd["command"][1:])
    assert flags["--listen-client-urls"] == "http://0.0.0.0:2379"
    assert flags["--advertise-client-urls"] == "http://etcd:2379"
    assert flags["--data-dir"].startswith(next(iter(volume_mounts(etcd))) + "/")
    assert "endpoint health" in " ".join(etcd["healthcheck"]["test"])


def test_the_nodes_are_healthy_when_patroni_answers_get_health():
    for name, service in database_nodes().items():
        check = " ".join(service["healthcheck"]["test"])
        port = environment(service)["REST_PORT"]
        assert f"http://127.0.0.1:{port}/health" in check, name
        assert "curl" not in check and "wget" not in check, "the image has neither: Python's urllib"


def test_the_apps_reach_the_cluster_through_multi_host_urls():
    from urllib.parse import parse_qs, urlsplit

    nodes = database_nodes()
    variables = {
        "POSTGRES_PASSWORD": "the-superusers",
        "POSTGRES_REPLICATION_PASSWORD": "r",
        "POSTGRES_REWIND_PASSWORD": "w",
    }
    node_env = {k: interpolated(v, variables) for k, v in environment(nodes["pg1"]).items()}
    superuser_password = node_env["SUPERUSER_PASSWORD"]
    hosts = ",".join(f"{name}:{environment(s)['PG_PORT']}" for name, s in sorted(nodes.items()))
    for name, service in app_services().items():
        env = {k: interpolated(v, variables) for k, v in environment(service).items() if "URL" in k}
        for key, wanted in (
            ("DATABASE_URL", {"target_session_attrs": ["read-write"]}),
            (
                "DATABASE_REPLICA_URL",
                {"target_session_attrs": ["prefer-standby"], "load_balance_hosts": ["random"]},
            ),
        ):
            url = urlsplit(env[key])
            userinfo, _, hostlist = url.netloc.rpartition("@")
            assert url.scheme == "postgresql" and hostlist == hosts, f"{name}: {key}"
            assert userinfo == f"postgres:{superuser_password}", f"{name}: {key}"
            assert url.path == "/" + node_env["APP_DATABASE"], f"{name}: {key} names the hook's database"
            assert parse_qs(url.query) == wanted, f"{name}: {key}"


def test_the_patroni_image_holds_the_template_and_runs_as_postgres():
    stages = dockerfile_stages(PATRONI_DOCKERFILE)
    assert len(stages) == 1 and stages[0]["base"] == "postgres:15-bookworm"
    lines = stages[0]["lines"]
    assert any("python3-venv" in line for line in lines if line.startswith("RUN"))
    copies = dict(line.split()[1:3] for line in lines if line.startswith("COPY"))
    requirements = copies["patroni/requirements.txt"]
    assert any(f"pip install -r {requirements}" in line for line in lines), "patroni/requirements.txt"
    defaults = entrypoint_defaults()
    assert copies["patroni/patroni.yml.in"] == defaults["CONFIG_TEMPLATE"], "the one shared template"
    entrypoint = copies["docker/patroni/entrypoint.sh"]
    assert any(line.startswith("ENTRYPOINT") and entrypoint in line for line in lines)
    assert [line for line in lines if line.startswith("USER ")][-1] == "USER postgres"
    # The shared archive volume takes its owner from the image's folder.
    assert any(f"chown postgres:postgres {defaults['ARCHIVE_DIR']}" in line for line in lines)
    assert "patroni[etcd3]" in PATRONI_REQUIREMENTS.read_text()


# -- docker/patroni/entrypoint.sh, run with a stand-in for Patroni ----------------------------

AWKWARD_PASSWORD = "it's|a&b\\\\c #d: e"  # quotes, sed and YAML metacharacters


def render_node(tmp_path: Path, node: str, template: Path = PATRONI_TEMPLATE, **env: str):
    """Run the node's entrypoint with its compose environment; Patroni is a stand-in that logs
    its arguments. Returns (the process, the stand-in's calls, the rendered file)."""
    variables = {
        "POSTGRES_PASSWORD": AWKWARD_PASSWORD,
        "POSTGRES_REPLICATION_PASSWORD": "replication-secret",
        "POSTGRES_REWIND_PASSWORD": 'rewind"secret',
    }
    node_env = {k: interpolated(v, variables) for k, v in environment(services()[node]).items()}
    folder = stub_bin(tmp_path, "patroni")
    log = tmp_path / "calls.log"
    log.write_text("")
    archive = tmp_path / "archive"
    archive.mkdir(exist_ok=True)
    config = tmp_path / f"{node}.yml"
    full_env = {
        "PATH": f"{folder}:/usr/bin:/bin",
        "STUB_LOG": str(log),
        **node_env,
        # Paths of the container that do not exist here; the rest are the compose values.
        "ARCHIVE_DIR": str(archive),
        "CONFIG_TEMPLATE": str(template),
        "CONFIG_FILE": str(config),
        **env,
    }
    result = subprocess.run(["sh", str(PATRONI_ENTRYPOINT)], capture_output=True, text=True, env=full_env)
    return result, log.read_text().splitlines(), config


def yaml_quoted(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def test_each_node_renders_the_shared_template_with_only_the_container_edits(tmp_path):
    template = PATRONI_TEMPLATE.read_text()
    hook = f"{PATRONI_ENTRYPOINT.resolve()} create-database"
    normalised = set()
    for node in DATABASE_NODES:
        result, calls, config = render_node(tmp_path, node)
        assert result.returncode == 0, result.stderr
        assert calls == [f"patroni {config} | multiproc=<unset>"], "exec patroni CONFIG_FILE"
        assert stat.S_IMODE(config.stat().st_mode) == 0o600, "it holds the passwords"
        rendered = config.read_text()

        env = environment(services()[node])
        values = {
            "NAME": node,
            "SCOPE": env["CLUSTER_SCOPE"],
            "PG_PORT": env["PG_PORT"],
            "REST_PORT": env["REST_PORT"],
            "ETCD_HOSTS": env["ETCD_HOSTS"],
            "DATA_DIR": entrypoint_defaults()["DATA_DIR"],
            "NODE_DIR": entrypoint_defaults()["NODE_DIR"],
            "BIN_DIR": "/usr/lib/postgresql/15/bin",
            "ARCHIVE_DIR": str(tmp_path / "archive"),
            "SUPERUSER_PASSWORD": yaml_quoted(AWKWARD_PASSWORD),
            "REPLICATION_PASSWORD": yaml_quoted("replication-secret"),
            "REWIND_PASSWORD": yaml_quoted('rewind"secret'),
        }
        expected = re.sub(r"@([A-Z_]+)@", lambda m, values=values: values[m.group(1)], template)
        removed = sorted(set(expected.splitlines()) - set(rendered.splitlines()))
        added = sorted(set(rendered.splitlines()) - set(expected.splitlines()))
        pg, rest = env["PG_PORT"], env["REST_PORT"]
        assert removed == sorted(
            [
                f"  connect_address: 127.0.0.1:{pg}",
                f"  connect_address: 127.0.0.1:{rest}",
                f"  listen: 127.0.0.1:{pg}",
                f"  listen: 127.0.0.1:{rest}",
            ]
        )
        assert added == sorted(
            [
                f"  connect_address: {node}:{pg}",
                f"  connect_address: {node}:{rest}",
                f"  listen: 0.0.0.0:{pg}",
                f"  listen: 0.0.0.0:{rest}",
                f"  post_bootstrap: {hook}",
                "    - host all all samenet scram-sha-256",
                "    - host replication replicator samenet scram-sha-256",
            ]
        )

        parsed = yaml.safe_load(rendered)
        assert parsed["name"] == node and parsed["scope"] == "ecommerce"
        assert parsed["restapi"] == {"listen": f"0.0.0.0:{rest}", "connect_address": f"{node}:{rest}"}
        assert parsed["postgresql"]["listen"] == f"0.0.0.0:{pg}"
        assert parsed["postgresql"]["connect_address"] == f"{node}:{pg}"
        assert parsed["etcd3"]["hosts"] == "etcd:2379"
        assert parsed["bootstrap"]["post_bootstrap"] == hook
        hba = parsed["postgresql"]["pg_hba"]
        assert hba[-2:] == [
            "host replication replicator samenet scram-sha-256",
            "host all all samenet scram-sha-256",
        ]
        authentication = parsed["postgresql"]["authentication"]
        assert authentication["superuser"]["password"] == AWKWARD_PASSWORD
        assert authentication["rewind"]["password"] == 'rewind"secret'
        normalised.add(rendered.replace(node, "<node>"))
    assert len(normalised) == 1, "the three nodes differ only in their name"


def test_a_node_refuses_to_start_without_its_secrets_or_with_a_template_it_does_not_know(tmp_path):
    result, calls, _ = render_node(tmp_path, "pg1", REPLICATION_PASSWORD="")
    assert result.returncode != 0 and "REPLICATION_PASSWORD" in result.stderr and calls == []

    changed = tmp_path / "changed.yml.in"
    changed.write_text(PATRONI_TEMPLATE.read_text().replace("name: @NAME@", "name: @NAME@\nx: @NEW_THING@"))
    result, calls, _ = render_node(tmp_path, "pg1", template=changed)
    assert result.returncode != 0 and "@NEW_THING@" in result.stderr and calls == []

    changed.write_text(PATRONI_TEMPLATE.read_text().replace("  listen: 127.0.0.1:@PG_PORT@", "  listen: '*'"))
    result, calls, _ = render_node(tmp_path, "pg2", template=changed)
    assert result.returncode != 0 and "listen" in result.stderr and calls == []


def test_the_post_bootstrap_hook_creates_the_apps_database_once(tmp_path):
    from sqlalchemy.engine import make_url

    psql = shutil.which("psql")
    if psql is None:
        pytest.skip("psql is not installed")
    url = make_url(os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/ecommerce_test"))
    server = url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    name = f"patroni_hook_{os.getpid()}_{int(time.time() * 1000) % 10**6}"
    env = {
        "PATH": "/usr/bin:/bin",
        "BIN_DIR": str(Path(psql).parent),
        "APP_DATABASE": name,
        "PGOPTIONS": "-c synchronous_commit=local",  # what Patroni sets for the hook
    }
    import psycopg2

    try:
        for _ in range(2):  # a second run finds it there
            result = subprocess.run(
                ["sh", str(PATRONI_ENTRYPOINT), "create-database", server],
                capture_output=True,
                text=True,
                env=env,
                timeout=60,
            )
            assert result.returncode == 0, result.stderr
        with psycopg2.connect(server) as conn, conn.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,))
            assert cursor.fetchone() == (1,)
    finally:
        conn = psycopg2.connect(server)
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.close()

    result = subprocess.run(
        ["sh", str(PATRONI_ENTRYPOINT), "create-database", server],
        capture_output=True,
        text=True,
        env={**env, "APP_DATABASE": 'bad"; DROP'},
    )
    assert result.returncode != 0 and "APP_DATABASE" in result.stderr


# -- Dockerfile and .dockerignore -------------------------------------------------------------


def test_the_dockerfile_is_multi_stage_with_a_slim_non_root_runtime():
    stages = dockerfile_stages()
    assert len(stages) >= 2 and stages[0]["name"] == "builder"
    builder, runtime = stages[0], stages[-1]
    assert any("pip wheel" in line for line in builder["lines"])
    assert runtime["name"] == "runtime" and runtime["base"] == "python:3.11-slim"
    lines = runtime["lines"]
    users = [line.split()[1] for line in lines if line.upper().startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the runtime must not run as root"
    assert not any("build-essential" in line or "gcc" in line for line in lines)
    assert any("from=builder" in line and "pip install" in line for line in lines), "wheels from the builder"
    assert "WORKDIR /app" in lines and "EXPOSE 8000" in lines
    copied = " ".join(line for line in lines if line.startswith("COPY"))
    for path in ("ecommerce/", "migrations/", "wsgi.py", "gunicorn.conf.py", "docker/entrypoint.sh"):
        assert path in copied, f"{path} is not copied"
    health = [line for line in lines if line.startswith("HEALTHCHECK")]
    assert health and "/healthz" in health[0] and "urllib" in health[0] and "curl" not in health[0]
    env = " ".join(line for line in lines if line.startswith("ENV"))
    assert "HOST=0.0.0.0" in env
    assert any(line.startswith("ENTRYPOINT") and "entrypoint.sh" in line for line in lines)
    assert 'CMD ["web"]' in lines


def test_the_dockerignore_keeps_local_state_and_secrets_out():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".venv", "instance", "run", ".git", ".env", ".pytest_cache", ".ruff_cache"} <= ignored
    copied = ["requirements.txt", "ecommerce", "migrations", "wsgi.py", "gunicorn.conf.py", "docker"]
    assert not set(copied) & ignored, "the Dockerfile copies these"


# -- nginx: the compose copy says what make stack's says --------------------------------------


def nginx_parse(text: str) -> list:
    """nginx configuration -> [(name, [args], children or None)], comments dropped."""
    tokens = re.findall(r"\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*'|#[^\n]*|[{};]|[^\s{};\"'#]+", text)
    stack: list[list] = [[]]
    current: list[str] = []
    for token in tokens:
        if token.startswith("#"):
            continue
        if token == ";":
            stack[-1].append((current[0], current[1:], None))
            current = []
        elif token == "{":
            block: list = []
            stack[-1].append((current[0], current[1:], block))
            stack.append(block)
            current = []
        elif token == "}":
            stack.pop()
        else:
            current.append(token)
    assert len(stack) == 1 and not current, "unbalanced nginx configuration"
    return stack[0]


def nginx_block(tree: list, *names: str) -> list:
    for name in names:
        tree = next(children for directive, _, children in tree if directive == name)
    return tree


PATH_DIRECTIVES = {
    "pid",
    "error_log",
    "access_log",
    "client_body_temp_path",
    "proxy_temp_path",
    "fastcgi_temp_path",
    "uwsgi_temp_path",
    "scgi_temp_path",
    "proxy_cache_path",
    "root",  # the storefront's files: the repository on a host, a mounted folder in compose
    "alias",  # the media files: MEDIA_ROOT on a host, the media volume in compose
}


def nginx_normalised(tree: list, parent: str = "") -> list:
    """The tree with what may differ between a host and containers blanked: the upstream
    servers' host, the listen address, and file paths."""
    out = []
    for name, args, children in tree:
        if name == "server" and parent == "upstream":
            args = ["<host>:" + args[0].rsplit(":", 1)[1], *args[1:]]
        elif name == "listen":
            args = [args[0].rsplit(":", 1)[-1], *args[1:]]
        elif name in PATH_DIRECTIVES:
            args = ["<path>", *args[1:]]
        elif name == "if" and args[:1] == ["(-f"]:  # a drain file: (-f FOLDER/appN)
            args = ["(-f", "<folder>/" + args[1].rsplit("/", 1)[-1], *args[2:]]
        out.append((name, args, nginx_normalised(children, name) if children is not None else None))
    return out


def nginx_lines(tree: list, prefix: str = "") -> list[str]:
    lines = []
    for name, args, children in tree:
        line = f"{prefix}{name} {' '.join(args)}".rstrip()
        lines.append(line)
        if children is not None:
            lines.extend(nginx_lines(children, prefix + "  "))
    return lines


def test_the_compose_nginx_has_make_stacks_directives():
    if not STACK_NGINX.exists():
        pytest.skip("nginx.conf (make stack) is not there yet: nothing to compare with")
    stack_tree = nginx_parse(STACK_NGINX.read_text())
    docker_tree = nginx_parse(DOCKER_NGINX.read_text())
    stack, docker = nginx_normalised(stack_tree), nginx_normalised(docker_tree)
    if stack != docker:
        import difflib

        diff = "\n".join(
            difflib.unified_diff(nginx_lines(stack), nginx_lines(docker), "nginx.conf", "docker")
        )
        pytest.fail(f"docker/nginx.conf differs from nginx.conf beyond addresses and paths:\n{diff}")
    stack_hosts = {
        d[1][0].rsplit(":", 1)[0] for d in nginx_block(stack_tree, "http", "upstream") if d[0] == "server"
    }
    assert stack_hosts == {"127.0.0.1"}
    # In the containers: logs to the container's output, temp files in /tmp.
    paths = {name: args[0] for name, args, _ in nginx_lines_flat(docker_tree) if name in PATH_DIRECTIVES}
    assert paths["error_log"] == "/dev/stderr" and paths["access_log"] == "/dev/stdout"
    assert all(
        path.startswith("/tmp/") for name, path in paths.items() if name.endswith("_path") or name == "pid"
    )


def nginx_lines_flat(tree: list) -> list:
    flat = []
    for name, args, children in tree:
        flat.append((name, args, children))
        if children is not None:
            flat.extend(nginx_lines_flat(children))
    return flat


def test_the_compose_nginx_passes_nginx_t(tmp_path):
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if nginx is None:
        pytest.skip("nginx is not installed (scripts/stack.sh installs it)")
    # The compose names resolve on the compose network only; the paths go to a scratch folder.
    text = DOCKER_NGINX.read_text()
    for name in web_instances():
        text = text.replace(f"server {name}:", "server 127.0.0.1:")
    text = text.replace("/tmp/", f"{tmp_path}/").replace("/dev/stdout", f"{tmp_path}/access.log")
    text = text.replace("/dev/stderr", f"{tmp_path}/error.log")
    config = tmp_path / "nginx.conf"
    config.write_text(text)
    result = subprocess.run(
        [nginx, "-t", "-q", "-c", str(config), "-p", f"{tmp_path}/", "-e", f"{tmp_path}/error.log"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


# -- docker/entrypoint.sh, run with stand-ins -------------------------------------------------

STUB = """#!/bin/sh
printf '%s %s | multiproc=%s\\n' "$(basename "$0")" "$*" "${PROMETHEUS_MULTIPROC_DIR-<unset>}" >> "$STUB_LOG"
"""


def stub_bin(tmp_path: Path, *names: str, script: str = STUB) -> Path:
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    for name in names:
        path = folder / name
        path.write_text(script)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return folder


def run_entrypoint(tmp_path: Path, *args: str, **env: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    folder = stub_bin(tmp_path, "flask", "gunicorn", "huey_consumer")
    log = tmp_path / "calls.log"
    log.write_text("")
    full_env = {
        "PATH": f"{folder}:{Path(sys.executable).parent}:/usr/bin:/bin",
        "STUB_LOG": str(log),
        "DATABASE_URL": f"sqlite:///{tmp_path}/app.db",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "multiproc"),
        **env,
    }
    result = subprocess.run(
        ["sh", str(ENTRYPOINT), *args], capture_output=True, text=True, env=full_env, timeout=60
    )
    return result, log.read_text().splitlines()


def test_the_web_role_migrates_before_it_starts_gunicorn(tmp_path):
    stale = tmp_path / "multiproc" / "counter_123.db"
    stale.parent.mkdir()
    stale.write_text("left by an earlier run")
    result, calls = run_entrypoint(tmp_path, "web", "--log-level", "debug")
    assert result.returncode == 0, result.stderr
    assert [call.split(" |")[0] for call in calls] == [
        "flask db upgrade",
        "gunicorn --config gunicorn.conf.py wsgi:app --log-level debug",
    ]
    assert calls[1].endswith(f"multiproc={tmp_path / 'multiproc'}")
    assert not stale.exists(), "the metrics folder starts empty"


def test_the_web_role_can_seed_and_can_leave_migrations_to_the_migrate_job(tmp_path):
    result, calls = run_entrypoint(tmp_path, "web", SEED_ON_START="true", SEED_PRODUCTS="50")
    assert result.returncode == 0, result.stderr
    assert [call.split(" |")[0] for call in calls] == [
        "flask db upgrade",
        "flask seed --products 50",
        "gunicorn --config gunicorn.conf.py wsgi:app",
    ]
    result, calls = run_entrypoint(tmp_path, "web", MIGRATE_ON_START="false", SEED_ON_START="true")
    assert result.returncode == 0, result.stderr
    assert [call.split(" |")[0] for call in calls] == ["gunicorn --config gunicorn.conf.py wsgi:app"]


def test_the_migrate_role_migrates_and_exits(tmp_path):
    result, calls = run_entrypoint(tmp_path, "migrate")
    assert result.returncode == 0, result.stderr
    assert [call.split(" |")[0] for call in calls] == ["flask db upgrade"]


def test_the_worker_role_execs_the_consumer_without_the_multiprocess_folder(tmp_path):
    result, calls = run_entrypoint(tmp_path, "worker", WORKERS="8")
    assert result.returncode == 0, result.stderr
    assert calls == ["huey_consumer ecommerce.worker.huey -k thread -w 8 | multiproc=<unset>"]


def test_any_other_command_is_executed_as_given(tmp_path):
    result, calls = run_entrypoint(tmp_path, "flask", "users", "create-admin", "--username", "admin")
    assert result.returncode == 0, result.stderr
    assert [call.split(" |")[0] for call in calls] == ["flask users create-admin --username admin"]


def test_nothing_starts_when_the_database_never_answers(tmp_path):
    started = time.monotonic()
    result, calls = run_entrypoint(
        tmp_path, "web", DATABASE_URL="postgresql://nobody:secret@127.0.0.1:1/shop", DB_WAIT_TIMEOUT="2"
    )
    assert result.returncode != 0 and calls == []
    assert "did not answer" in result.stderr and "secret" not in result.stderr
    assert time.monotonic() - started < 30


def test_the_entrypoint_waits_for_a_database_that_answers(tmp_path):
    from sqlalchemy.engine import make_url

    url = make_url(os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/ecommerce_test"))
    server = url.set(database="postgres").render_as_string(hide_password=False)
    result, calls = run_entrypoint(tmp_path, "migrate", DATABASE_URL=server, DB_WAIT_TIMEOUT="10")
    assert result.returncode == 0, result.stderr
    assert [call.split(" |")[0] for call in calls] == ["flask db upgrade"]


def test_the_shell_scripts_are_clean():
    scripts = (ENTRYPOINT, PATRONI_ENTRYPOINT, DEPLOY, *sorted((ROOT / "scripts").glob("**/*.sh")))
    for script in scripts:
        shell = "sh" if script.read_text().startswith("#!/bin/sh") else "bash"
        assert subprocess.run([shell, "-n", str(script)]).returncode == 0, script
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (the syntax was checked)")
    result = subprocess.run([shellcheck, *map(str, scripts)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


# -- docker/deploy.sh, run against stand-ins for ssh and docker -------------------------------

FAKE_SSH = """#!/usr/bin/env bash
# ssh [options] user@host [command...]: runs the command here, like the remote shell would.
printf 'ssh %s\\n' "$*" >> "$STUB_LOG"
while [ $# -gt 0 ]; do
  case "$1" in
    -i|-p|-o) shift 2 ;;
    -*) shift ;;
    *) shift; break ;;
  esac
done
exec bash -c "$*"
"""

FAKE_DOCKER = """#!/bin/sh
printf 'docker %s\\n' "$*" >> "$STUB_LOG"
"""


# The host still runs the single `postgres` container of a release before the cluster.
FAKE_DOCKER_WITH_OLD_POSTGRES = """#!/bin/sh
printf 'docker %s\\n' "$*" >> "$STUB_LOG"
case "$*" in *com.docker.compose.service=postgres*) echo 0123456789ab ;; esac
"""


def run_deploy(
    tmp_path: Path, docker: str = FAKE_DOCKER, **env: str
) -> tuple[subprocess.CompletedProcess, list[str], Path]:
    folder = stub_bin(tmp_path, "ssh", script=FAKE_SSH)
    stub_bin(tmp_path, "docker", script=docker)
    log = tmp_path / "calls.log"
    log.write_text("")
    target = tmp_path / "srv" / "ecommerce"
    full_env = {
        "PATH": f"{folder}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "STUB_LOG": str(log),
        "IMAGE": "ghcr.io/acme/shop:sha-0123456789abcdef",
        "DEPLOY_HOST": "staging.example.com",
        "DEPLOY_USER": "deploy",
        "DEPLOY_SSH_KEY": "-----BEGIN OPENSSH PRIVATE KEY-----\nnot a key\n-----END OPENSSH PRIVATE KEY-----",
        "DEPLOY_KNOWN_HOSTS": "staging.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAtest",
        "DEPLOY_PATH": str(target),
        **env,
    }
    result = subprocess.run(["bash", str(DEPLOY)], capture_output=True, text=True, env=full_env, timeout=60)
    return result, log.read_text().splitlines(), target


def test_the_deploy_migrates_then_rolls_the_instances_one_at_a_time(tmp_path):
    target = tmp_path / "srv" / "ecommerce"
    target.mkdir(parents=True)
    (target / ".env").write_text("SECRET_KEY=kept\nIMAGE=ghcr.io/acme/shop:sha-old\n")
    result, calls, target = run_deploy(tmp_path)
    assert result.returncode == 0, result.stderr

    ssh_calls = [call for call in calls if call.startswith("ssh ")]
    assert ssh_calls and all("StrictHostKeyChecking=yes" in call for call in ssh_calls)
    assert all("deploy@staging.example.com" in call for call in ssh_calls)
    copied = ("docker-compose.yml", "docker/nginx.conf", "docker/prometheus.yml", "prometheus/alerts.yml")
    # The PostgreSQL nodes' image is built on the host: its Dockerfile and build context too.
    copied += (
        ".dockerignore",
        "docker/patroni/Dockerfile",
        "patroni/patroni.yml.in",
        "patroni/requirements.txt",
    )
    for path in copied:
        assert (target / path).is_file(), f"{path} was not copied"
    assert (target / ".env").read_text() == "SECRET_KEY=kept\nIMAGE=ghcr.io/acme/shop:sha-0123456789abcdef\n"
    assert stat.S_IMODE((target / ".env").stat().st_mode) == 0o600

    docker = [call.removeprefix("docker compose ") for call in calls if call.startswith("docker ")]
    wait = "--no-build --no-deps --wait --wait-timeout 180"
    assert docker == [
        "docker ps -aq --filter label=com.docker.compose.project=ecommerce"
        " --filter label=com.docker.compose.service=postgres",
        "pull --quiet",
        "build --quiet " + " ".join(DATABASE_NODES),
        "up -d --no-build --remove-orphans --wait --wait-timeout 180 etcd "
        + " ".join(DATABASE_NODES)
        + " redis mailpit",
        "run --rm -T --no-deps migrate",
        f"up -d {wait} app1",
        "exec -T nginx nginx -s reload",
        f"up -d {wait} app2",
        "exec -T nginx nginx -s reload",
        f"up -d {wait} worker",
        f"up -d {wait} nginx prometheus grafana",
        "exec -T nginx nginx -s reload",
        "ps",
    ]
    assert sorted(f"app{i}" for i in range(1, STACK_APP_INSTANCES + 1)) == sorted(web_instances())


def test_the_deploy_logs_in_to_the_registry_only_with_a_token(tmp_path):
    result, calls, _ = run_deploy(tmp_path, REGISTRY_USER="bot", REGISTRY_TOKEN="t0ken")
    assert result.returncode == 0, result.stderr
    assert "docker login ghcr.io -u bot --password-stdin" in calls
    assert not any("t0ken" in call for call in calls), "the token never appears on a command line"


def test_the_deploy_stops_before_leaving_the_old_single_postgres_behind(tmp_path):
    result, calls, _ = run_deploy(tmp_path, docker=FAKE_DOCKER_WITH_OLD_POSTGRES)
    assert result.returncode != 0 and "docs/deployment.md" in result.stderr
    docker = [call for call in calls if call.startswith("docker ")]
    assert len(docker) == 1 and docker[0].startswith("docker ps "), "nothing is pulled, built or started"


def test_the_deploy_refuses_to_run_without_its_parameters(tmp_path):
    result, calls, _ = run_deploy(tmp_path, DEPLOY_KNOWN_HOSTS="")
    assert result.returncode != 0 and "DEPLOY_KNOWN_HOSTS" in result.stderr
    assert calls == []


# -- .github/workflows/ci.yml -----------------------------------------------------------------


@cache
def workflow() -> dict:
    data = yaml.safe_load(WORKFLOW.read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as true
    return data


def test_ci_runs_on_push_and_pull_request():
    triggers = workflow()["on"]
    assert "pull_request" in triggers
    assert triggers["push"]["branches"] == ["main"] and triggers["push"]["tags"] == ["v*"]


def test_ci_tests_against_postgres_and_redis_services():
    job = workflow()["jobs"]["test"]
    services_ = job["services"]
    assert services_["postgres"]["image"] == "postgres:15" and services_["redis"]["image"] == "redis:7"
    for service in services_.values():
        assert "--health-cmd" in service["options"]
    assert job["env"]["TEST_DATABASE_URL"].startswith("postgresql://postgres:postgres@127.0.0.1:5432/")
    assert job["env"]["TEST_REDIS_URL"].startswith("redis://127.0.0.1:6379/")
    python = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/setup-python"))
    assert python["with"]["python-version"] == "3.11"
    assert any(s.get("run") == "bash .ci/run" for s in job["steps"])


def test_ci_builds_the_image_and_pushes_only_from_main_and_tags():
    job = workflow()["jobs"]["build"]
    assert job["needs"] == "test"
    assert job["permissions"]["packages"] == "write"
    build = next(s for s in job["steps"] if s.get("uses", "").startswith("docker/build-push-action"))
    assert build["with"]["push"] == "${{ env.PUSH == 'true' }}"
    assert "refs/heads/main" in job["env"]["PUSH"] and "refs/tags/v" in job["env"]["PUSH"]
    assert "github.event_name == 'push'" in job["env"]["PUSH"]


def test_ci_deploys_main_to_staging_and_tags_to_production_with_the_deploy_script():
    jobs = workflow()["jobs"]
    required = set(re.findall(r'^: "\$\{(\w+):\?', DEPLOY.read_text(), re.M))
    assert required == {"IMAGE", "DEPLOY_HOST", "DEPLOY_USER", "DEPLOY_SSH_KEY", "DEPLOY_KNOWN_HOSTS"}
    for name, environment_name, condition in (
        ("deploy-staging", "staging", "github.ref == 'refs/heads/main'"),
        ("deploy-production", "production", "startsWith(github.ref, 'refs/tags/v')"),
    ):
        job = jobs[name]
        assert job["needs"] == "build" and condition in job["if"], name
        assert job["environment"]["name"] == environment_name
        step = next(s for s in job["steps"] if s.get("run"))
        assert step["run"] == "bash docker/deploy.sh"
        assert required <= set(step["env"]), f"{name}: {sorted(required - set(step['env']))} missing"
        assert step["env"]["IMAGE"] == "${{ needs.build.outputs.image }}"
        for secret in ("DEPLOY_HOST", "DEPLOY_USER", "DEPLOY_SSH_KEY", "DEPLOY_KNOWN_HOSTS"):
            assert step["env"][secret] == f"${{{{ secrets.{secret} }}}}", f"{name}: {secret}"
