"""docker-compose.yml, checked without a Docker engine: schema, commands, variables, ports, mounts."""

from __future__ import annotations

import importlib
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

from services import SERVICES
from tests.deploy.conftest import (
    CLUSTER_FILE,
    COMPOSE_FILE,
    ENV_EXAMPLE,
    REPO,
    clean_env,
    compose_config,
    empty_passwords,
    env_example,
    filled_env_example,
)
from veille.config import parse_config
from veille.settings import ServiceSettings
from veille_cli.run_cmd import run as run_command

INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:[:?-][^}]*)?\}")
NATS_CONF_VARIABLE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
CONTAINER_CONFIG = "/etc/veille/veille.yaml"


def veille_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The compose services that run a veille service (`veille run NAME`)."""
    out = {}
    for name, service in compose["services"].items():
        command = service.get("command") or []
        if isinstance(command, list) and command[:1] == ["run"]:
            out[name] = service
    return out


def known_settings_variables() -> set[str]:
    """Every VEILLE_* variable a settings class of veille reads (and its *_FILE form)."""
    for module in SERVICES.values():
        importlib.import_module(module)
    classes: list[type[BaseSettings]] = [ServiceSettings]
    seen: set[type[BaseSettings]] = set()
    names: set[str] = set()
    while classes:
        cls = classes.pop()
        if cls in seen:
            continue
        seen.add(cls)
        classes.extend(cls.__subclasses__())
        prefix = str(cls.model_config.get("env_prefix", ""))
        for field in cls.model_fields:
            names.add(f"{prefix}{field}".upper())
            names.add(f"{prefix}{field}_FILE".upper())
    return names


def host_path(volume: str) -> Path | None:
    """The host side of a bind mount ``/abs/host:/container[:mode]``, None for a named volume."""
    source = volume.split(":", 1)[0]
    return Path(source) if source.startswith("/") else None


def config_file_variables(compose: dict[str, Any], service: dict[str, Any]) -> set[str]:
    """Variables that ${...} in the configuration file mounted into ``service`` reads."""
    names: set[str] = set()
    for volume in service.get("volumes", []):
        parts = volume.split(":")
        if len(parts) >= 2 and parts[1] == CONTAINER_CONFIG:
            path = host_path(volume)
            assert path is not None and path.is_file(), f"{volume}: the configuration file is missing"
            text = "\n".join(re.sub(r"(^|\s)#.*$", "", line) for line in path.read_text(encoding="utf-8").splitlines())
            names |= set(INTERPOLATION.findall(text))
    return names


def test_compose_file_is_valid_with_the_example_environment(compose: dict[str, Any]) -> None:
    """docker-compose validates the file against its schema and resolves every variable from .env.example."""
    expected = {"nats", "nats-exporter", "prometheus", "grafana", "mailpit"}
    assert expected <= set(compose["services"])
    assert {"nats-data", "prometheus-data", "grafana-data"} <= set(compose["volumes"])


def test_compose_refuses_to_start_without_the_passwords(tmp_path: Path) -> None:
    """Without the passwords in .env, docker-compose stops with a message naming the missing variable."""
    env_file = tmp_path / "env"
    kept = {k: v for k, v in env_example().items() if "PASSWORD" not in k}
    env_file.write_text("".join(f"{k}={v}\n" for k, v in kept.items()))
    result = compose_config(COMPOSE_FILE, env_file=env_file)
    assert result.returncode != 0
    assert "PASSWORD in .env" in result.stderr


def test_env_example_as_copied_starts_nothing_until_every_password_is_set(tmp_path: Path) -> None:
    """.env.example ships no password: copied as is, or with one password left empty, compose refuses to start."""
    passwords = empty_passwords()
    assert "VEILLE_NATS_PASSWORD" in passwords and "GRAFANA_ADMIN_PASSWORD" in passwords
    assert {k for k in env_example() if "PASSWORD" in k} == set(passwords), "a password has a value in .env.example"
    result = compose_config(COMPOSE_FILE, env_file=ENV_EXAMPLE)
    assert result.returncode != 0
    assert "PASSWORD in .env" in result.stderr
    filled = filled_env_example().read_text(encoding="utf-8")
    for name in (
        "VEILLE_NATS_PASSWORD",
        "VEILLE_NATS_PASSWORD_NOTIFIER",
        "GRAFANA_ADMIN_PASSWORD",
    ):  # one empty: refused
        env_file = tmp_path / f"env-{name}"
        env_file.write_text(re.sub(rf"^{name}=.*$", f"{name}=", filled, flags=re.M), encoding="utf-8")
        result = compose_config(COMPOSE_FILE, env_file=env_file)
        assert result.returncode != 0, name
        assert f"set {name} in .env" in result.stderr


def test_every_veille_service_is_in_compose_and_its_command_exists(compose: dict[str, Any]) -> None:
    """Each registered service runs in compose as `veille run NAME`, and the CLI accepts every such NAME."""
    running = {service["command"][1]: name for name, service in veille_services(compose).items()}
    assert set(running) == set(SERVICES), "compose must run exactly the services of services.SERVICES"
    choices = set(run_command.params[0].type.choices)  # type: ignore[attr-defined]
    for command_name, compose_name in running.items():
        assert command_name in choices, f"{compose_name}: `veille run {command_name}` does not exist"
        assert compose_name == command_name


def test_veille_services_use_one_image_and_a_readyz_healthcheck(compose: dict[str, Any]) -> None:
    """Every veille service runs the one image built from the Dockerfile and is healthy only when /readyz is."""
    services = veille_services(compose)
    assert {s["image"] for s in services.values()} == {"veille:local"}
    for name, service in services.items():
        assert service["build"]["dockerfile"] == "Dockerfile", name
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD" and "/readyz" in test, name
        assert "/usr/local/lib/veille/healthcheck.py" in test, name
        assert service["depends_on"]["nats"]["condition"] == "service_healthy", name
        assert service["environment"]["VEILLE_HTTP_PORT"] == "8080", name
        if name != "console":  # the console is what people open in a browser (issue 16): one published port
            assert not service.get("ports"), f"{name} publishes a port: replicas could not scale"
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "COPY deploy/docker/healthcheck.py /usr/local/lib/veille/healthcheck.py" in dockerfile


def test_every_environment_variable_of_a_veille_service_is_known(compose: dict[str, Any]) -> None:
    """Each variable compose sets on a veille service is a setting or is read by its mounted configuration."""
    settings = known_settings_variables()
    for name, service in veille_services(compose).items():
        config_vars = config_file_variables(compose, service)
        for variable in service["environment"]:
            assert variable in settings or variable in config_vars, (
                f"{name}: {variable} is neither a VEILLE_* setting nor used by the configuration file"
            )
        missing = {v for v in config_vars if v not in service["environment"]}
        assert not missing, f"{name}: the configuration file reads {missing}, which compose does not set"


def test_nats_gets_exactly_the_variables_its_configuration_reads(compose: dict[str, Any]) -> None:
    """The NATS container's environment matches the $VARIABLES of the NATS configuration it mounts."""
    nats = compose["services"]["nats"]
    conf = next(host_path(v) for v in nats["volumes"] if v.split(":")[1] == "/etc/nats/nats.conf")
    assert conf is not None
    text = "\n".join(line.split("#", 1)[0] for line in conf.read_text().splitlines())
    text = re.sub(r'"[^"\n]*"', '""', text)  # "$JS.API..." in quotes is a subject, not a variable
    assert set(NATS_CONF_VARIABLE.findall(text)) == set(nats["environment"])


def test_no_two_services_claim_the_same_host_port(compose: dict[str, Any]) -> None:
    """Published host ports are unique, bound to the configured address, and only on non-veille services."""
    claimed: dict[tuple[str, str], str] = {}
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            if isinstance(port, dict):
                host_ip, published = str(port.get("host_ip", "")), str(port["published"])
                protocol = port.get("protocol", "tcp")
            else:
                match = re.match(r"^(?:(?P<ip>[\d.]+):)?(?P<published>\d+):(?P<target>\d+)(?:/(?P<proto>\w+))?$", port)
                assert match, f"{name}: unexpected port form {port!r}"
                host_ip, published, protocol = match["ip"] or "", match["published"], match["proto"] or "tcp"
            key = (f"{published}/{protocol}", host_ip)
            assert key not in claimed, f"{name} and {claimed[key]} both publish {published}"
            claimed[key] = name
            assert host_ip == "127.0.0.1", f"{name} publishes {published} beyond loopback by default"
    assert len(claimed) >= 5


def test_env_example_documents_exactly_what_compose_reads() -> None:
    """Every ${VARIABLE} of docker-compose.yml is in .env.example, and .env.example sets nothing else."""
    used = set(INTERPOLATION.findall(COMPOSE_FILE.read_text(encoding="utf-8")))
    documented = set(env_example()) - {"COMPOSE_PROJECT_NAME"}
    assert used - documented == set(), f"not in .env.example: {sorted(used - documented)}"
    assert documented - used == set(), f"in .env.example but unused: {sorted(documented - used)}"


def test_no_secret_is_written_in_compose_files() -> None:
    """Passwords, secrets and tokens reach containers only through ${...} from .env, never as literals."""
    for path in (COMPOSE_FILE, CLUSTER_FILE):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        for name, service in data["services"].items():
            environment = service.get("environment") or {}
            for key, value in environment.items():
                if re.search(r"PASSWORD|SECRET|TOKEN", key) and not key.endswith("_FILE"):
                    assert INTERPOLATION.fullmatch(str(value)), f"{path.name}: {name}.{key} is a literal"


def test_bind_mounts_exist(compose: dict[str, Any]) -> None:
    """Every file or directory compose mounts from the repository exists."""
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            path = host_path(volume)
            if path is not None:
                assert path.exists(), f"{name} mounts {path}, which does not exist"


def test_compose_configuration_file_is_a_valid_veille_configuration(compose: dict[str, Any]) -> None:
    """The configuration compose mounts passes `veille check-config` with the environment compose gives it."""
    service = compose["services"]["notifier"]
    path = next(host_path(v) for v in service["volumes"] if v.split(":")[1] == CONTAINER_CONFIG)
    assert path is not None
    env = {k: str(v) for k, v in service["environment"].items()}
    config = parse_config(path.read_text(encoding="utf-8"), filename=str(path), env=env)
    assert config.watches and config.receivers
    assert config.receivers[0].email[0].smarthost == "mailpit:1025"


def test_cluster_override_is_valid_and_replicates_the_streams() -> None:
    """deploy/compose.cluster.yml adds two NATS nodes and points every veille service at all three."""
    result = compose_config(COMPOSE_FILE, CLUSTER_FILE)
    assert result.returncode == 0, result.stderr
    data = yaml.safe_load(result.stdout)
    assert {"nats", "nats-2", "nats-3"} <= set(data["services"])
    for name in SERVICES:
        environment = data["services"][name]["environment"]
        assert environment["VEILLE_STREAM_REPLICAS"] == "3"
        assert environment["VEILLE_NATS_URL"].count("nats://") == 3
    assert data["services"]["nats"]["command"][-1] == "/etc/nats/cluster.conf"
    conf = (CLUSTER_FILE.parent / "nats" / "cluster.conf").read_text()
    text = "\n".join(line.split("#", 1)[0] for line in conf.splitlines())
    read = set(NATS_CONF_VARIABLE.findall(re.sub(r'"[^"\n]*"', '""', text)))
    for node in ("nats", "nats-2", "nats-3"):
        missing = read - set(data["services"][node]["environment"])
        assert not missing, f"{node} would not start: cluster.conf reads {sorted(missing)}, which it is not given"


@pytest.mark.parametrize("has_v2", [True, False], ids=["docker-compose-v2", "docker-compose-v1-only"])
def test_make_up_down_and_logs_wrap_docker_compose(tmp_path: Path, has_v2: bool) -> None:
    """`make up`, `make down` and `make logs` run `docker compose`, or Debian's v1 `docker-compose` without it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # A docker CLI whose `compose version` succeeds only when the Compose v2 plugin is there.
    fake = bin_dir / "docker"
    fake.write_text(f'#!/bin/sh\n[ "$1" = compose ] && exit {0 if has_v2 else 1}\nexit 0\n')
    fake.chmod(0o755)
    env = clean_env()
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    result = subprocess.run(
        ["make", "-n", "up", "down", "logs"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=60,
        check=True,
    )
    compose = "docker compose" if has_v2 else "docker-compose"
    assert f"{compose} up -d --build" in result.stdout
    assert f"{compose} down" in result.stdout
    assert f"{compose} logs -f" in result.stdout
    assert ENV_EXAMPLE.exists()
