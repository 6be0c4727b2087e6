"""Static checks of the resolved docker-compose.yml: services, ports, images, health, volumes, limits."""

from __future__ import annotations

import re
from typing import Any

import pytest
from compose_helpers import ROOT

# What the product's documentation promises, and the services the docs and the Makefile name.
REQUIRED_SERVICES = {
    "kafka", "schema-registry", "kafka-ui", "kafka-init", "spark-master", "spark-worker", "postgres",
    "airflow-init", "airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
    "dashboard", "log-generator", "volumes-init", "notifier",
}
DOCUMENTED_HOST_PORTS = {  # service: (host port, container port)
    "dashboard-proxy": (8501, 8501),  # the dashboard behind its login
    "airflow-api-server": (8070, 8070),
    "spark-master": (8080, 8080),
    "kafka-ui": (9021, 8080),
    "kafka": (9092, 9092),
}
ONE_SHOT = {"kafka-init", "airflow-init", "volumes-init", "log-generator"}
LAPTOP_BUDGET_BYTES = 14 * 2**30  # a 16 GB laptop, with room for the host


def _published(service: dict[str, Any]) -> list[tuple[int, int]]:
    pairs = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            pairs.append((int(port["published"]), int(port["target"])))
        else:
            host, _, target = str(port).rpartition(":")
            pairs.append((int(host.rpartition(":")[2]), int(target.split("/")[0])))
    return pairs


def _bytes(size: str | int) -> int:
    if isinstance(size, int):
        return size
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmg]?)b?", str(size).lower())
    assert match, f"unreadable memory size {size!r}"
    return int(float(match.group(1)) * {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}[match.group(2)])


def test_every_required_service_exists(services: dict[str, Any]) -> None:
    assert REQUIRED_SERVICES - set(services) == set()


def test_services_named_by_the_docs_and_the_makefile_exist(services: dict[str, Any]) -> None:
    named: set[str] = set()
    makefile = (ROOT / "compose.mk").read_text()
    named |= set(re.findall(r"\$\(COMPOSE\)(?: --profile \w+)? (?:exec -T|port|run --rm) ([a-z][a-z0-9-]+)", makefile))
    named |= set(re.findall(r"--scale ([a-z][a-z0-9-]+)=", makefile))
    docs = (ROOT / "docs" / "distributed.md").read_text()
    # The cluster tier's section names its own processes (kafka-1, spark-worker-1, ...), not compose services.
    docs = re.sub(r"^## The cluster tier.*?(?=^## )", "", docs, flags=re.MULTILINE | re.DOTALL)
    # Services are written as `name` in the first column of the docs' service table.
    named |= set(re.findall(r"^\|\s*`([a-z][a-z0-9-]+)`", docs, flags=re.MULTILINE))
    named |= set(re.findall(r"docker compose (?:exec|logs|run --rm|up -d --scale) ([a-z][a-z0-9-]+)", docs))
    named |= set(re.findall(r"SERVICE=([a-z][a-z0-9-]+)", docs))
    assert named, "no service names found in compose.mk and docs/distributed.md"
    assert named - set(services) == set(), "named in compose.mk or docs/distributed.md but not in docker-compose.yml"
    assert REQUIRED_SERVICES - named - {"volumes-init", "airflow-init"} == set(), "services the docs do not describe"


def test_host_ports_are_unique_and_as_documented(services: dict[str, Any]) -> None:
    seen: dict[int, str] = {}
    for name, service in services.items():
        for host, _ in _published(service):
            assert host not in seen, f"host port {host} published by both {seen[host]} and {name}"
            seen[host] = name
    for name, pair in DOCUMENTED_HOST_PORTS.items():
        assert pair in _published(services[name]), f"{name} should publish {pair[0]} -> {pair[1]}"


def test_scalable_services_publish_no_fixed_port_or_name(services: dict[str, Any]) -> None:
    worker = services["spark-worker"]
    assert not worker.get("ports") and "container_name" not in worker
    assert all("container_name" not in s for s in services.values()), "container_name blocks a second stack"


def test_every_image_is_pinned(services: dict[str, Any]) -> None:
    for name, service in services.items():
        image = service.get("image")
        assert image, f"{name} has no image name"
        if "build" in service:
            assert image.startswith("incident-intelligence/"), f"{name}: built images are named incident-intelligence/*"
            continue
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: image {image} has no tag"
        # A full release: x.y.z, or x.y where that is the whole version (Postgres since 10).
        release = r"\d+\.\d+" if repository == "postgres" else r"\d+\.\d+\.\d+"
        assert re.search(release, tag), f"{name}: image {image} is not pinned to a release"


def test_every_build_context_has_its_dockerfile(services: dict[str, Any]) -> None:
    missing = []
    for name, service in services.items():
        build = service.get("build")
        if not build:
            continue
        context = ROOT / build["context"]  # docker-compose resolves it to an absolute path
        assert context == ROOT, f"{name}: every image is built from the repository root (shared contracts, lock)"
        dockerfile = context / build.get("dockerfile", "Dockerfile")
        if not dockerfile.is_file():
            missing.append(f"{name}: {dockerfile.relative_to(ROOT)}")
    assert not missing, f"build contexts without their Dockerfile: {missing}"


def test_long_running_services_have_health_checks_and_restart(services: dict[str, Any]) -> None:
    for name, service in services.items():
        if name in ONE_SHOT:
            assert service.get("restart", "no") == "no", f"one-shot {name} must not restart"
            continue
        test = service.get("healthcheck", {}).get("test")
        assert test and not service["healthcheck"].get("disable"), f"{name} has no healthcheck"
        assert service.get("restart") == "unless-stopped", f"{name} should restart unless stopped"


def test_dependencies_wait_for_health_or_completion(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for target, rule in service.get("depends_on", {}).items():
            condition = rule.get("condition")
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target}'s health, which has none"
            elif condition == "service_completed_successfully":
                assert target in ONE_SHOT, f"{name} waits for {target} to finish, but it runs forever"
            else:
                pytest.fail(f"{name} depends on {target} without waiting for its health (condition: {condition})")


def test_the_pipeline_waits_for_its_infrastructure(services: dict[str, Any]) -> None:
    scheduler = services["airflow-scheduler"]["depends_on"]
    assert scheduler["kafka-init"]["condition"] == "service_completed_successfully"
    assert scheduler["spark-master"]["condition"] == "service_healthy"
    assert services["kafka-init"]["depends_on"]["schema-registry"]["condition"] == "service_healthy"
    assert services["schema-registry"]["depends_on"]["kafka"]["condition"] == "service_healthy"


def _named_volume_at(service: dict[str, Any], target: str) -> str | None:
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("target") == target and volume.get("type", "volume") == "volume":
                return volume["source"]
        else:
            source, _, rest = volume.partition(":")
            if rest.split(":")[0] == target and not source.startswith((".", "/")):
                return source
    return None


def test_state_lives_in_named_volumes(resolved: dict[str, Any], services: dict[str, Any]) -> None:
    kafka = services["kafka"]
    assert _named_volume_at(kafka, kafka["environment"]["KAFKA_LOG_DIRS"]) == "kafka-data"
    assert _named_volume_at(services["postgres"], "/var/lib/postgresql/data") == "postgres-data"
    assert {"kafka-data", "postgres-data", "parquet-data", "checkpoints"} <= set(resolved["volumes"])


def test_project_containers_share_data_and_checkpoints_at_the_configured_paths(services: dict[str, Any]) -> None:
    users = set()
    for name, service in services.items():
        env = service.get("environment", {})
        if "DATA_DIR" not in env:
            continue
        assert _named_volume_at(service, env["DATA_DIR"]) == "parquet-data", f"{name}: DATA_DIR is not the data volume"
        assert _named_volume_at(service, env["CHECKPOINT_DIR"]) == "checkpoints", f"{name}: CHECKPOINT_DIR"
        users.add(service.get("user"))
    # Executors (Spark workers) and the driver (Airflow scheduler) write the same folders.
    assert {"spark-worker", "airflow-scheduler", "dashboard"} <= {n for n, s in services.items()
                                                                  if "DATA_DIR" in s.get("environment", {})}
    assert len(users) == 1 and None not in users, f"project containers run as different users: {users}"
    assert not next(iter(users)).startswith("0:"), "project containers must not run as root"


def test_only_the_volume_initialiser_runs_as_root(services: dict[str, Any]) -> None:
    root = {name for name, s in services.items() if str(s.get("user", "")).split(":")[0] in ("0", "root")}
    assert root == {"volumes-init"}
    init = services["volumes-init"]
    command = " ".join(init["command"])
    for path in ("/data", "/checkpoints", "/opt/airflow/logs"):
        assert path in command and _named_volume_at(init, path), f"volumes-init does not prepare {path}"


def test_resource_limits_fit_a_16_gb_laptop(services: dict[str, Any]) -> None:
    total = 0
    for name, service in services.items():
        limits = service.get("deploy", {}).get("resources", {}).get("limits", {})
        assert "memory" in limits and "cpus" in limits, f"{name} has no memory and cpu limit"
        if name not in ONE_SHOT:
            total += _bytes(limits["memory"])
    assert total <= LAPTOP_BUDGET_BYTES, f"long-running services may use {total / 2**30:.1f} GiB together"


def test_spark_worker_fits_in_its_container(services: dict[str, Any], raw_compose: dict[str, Any]) -> None:
    worker = services["spark-worker"]
    command = worker["command"]
    offered = _bytes(command[command.index("--memory") + 1])
    limit = _bytes(worker["deploy"]["resources"]["limits"]["memory"])
    assert offered + 512 * 2**20 <= limit, "the worker offers executors more memory than its container has"
    driver = _bytes(services["airflow-scheduler"]["environment"]["SPARK_DRIVER_MEMORY"])
    assert driver + 512 * 2**20 <= _bytes(services["airflow-scheduler"]["deploy"]["resources"]["limits"]["memory"])


def test_the_commands_compose_passes_are_accepted_by_the_project_clis(services: dict[str, Any]) -> None:
    from incident_contracts.register_schema import build_parser as init_parser
    from incident_contracts.settings import Settings
    from log_generator.cli import build_parser as generator_parser

    args = generator_parser().parse_args(services["log-generator"]["command"])
    assert (args.scenario, args.rate, args.duration) == ("mixed", 2000.0, 60.0)
    makefile = (ROOT / "compose.mk").read_text()
    assert "run --rm log-generator --scenario" in makefile
    command = services["kafka-init"]["command"]
    assert command[:3] == ["python", "-m", "incident_contracts.register_schema"]
    init_parser(Settings(_env_file=None)).parse_args(command[3:])  # type: ignore[call-arg]
