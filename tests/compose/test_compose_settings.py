"""The containers get every setting the code reads, with values the settings accept, and only settings
differ from the embedded stack: no code path exists only for compose."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from compose_helpers import COMPOSE_FILE, ROOT, run_compose

from incident_airflow.environment import kafka_connection, spark_connection
from incident_contracts.settings import Settings

# CLUSTER_* configure the cluster tier's supervisor (`make cluster-up`), and KAFKA_CONTROLLER_PORT and KAFKA_HEAP
# the embedded stack's Kafka node (`make up`): not code that runs in a container (compose runs its own Kafka).
SUPERVISOR_SETTINGS = {"kafka_controller_port", "kafka_heap"}
SETTINGS = {name.upper() for name in Settings.model_fields
            if not name.startswith("cluster_") and name not in SUPERVISOR_SETTINGS}
SECRET_SETTINGS = {"GEMINI_API_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "INGEST_TOKEN", "NOTIFY_WEBHOOK_URL"}
ANALYSIS_SERVICES = {"dashboard", "airflow-scheduler"}  # the only ones that call Gemini
TABLE_SERVICES = {"dashboard", "airflow-scheduler", "spark-worker", "notifier"}  # those that use the tables
# Variables the code reads outside the settings, and why compose need not (or does) set them.
PROCESS_VARIABLES = {
    "PROJECT_ROOT": "set by airflow/Dockerfile, where the DAGs and the Spark entry file live",
    "ENV_FILE": "optional: another .env; containers take their settings from the environment",
    "CATALOG_FILE": "optional: another service catalog; the packaged one is used by default",
    "PATH": "the image's own",
    "JAVA_HOME": "the Java runtime Spark runs on (the class-data archive is made for it)",
}
# Addresses that exist only on the compose network: project code must get them from the settings.
COMPOSE_ADDRESSES = ("kafka:29092", "schema-registry:8081", "spark://spark-master", "//airflow-api-server")
SOURCE_FOLDERS = ("schemas", "stack", "log-generator", "spark", "dashboard", "airflow")


def _project_services(services: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {name: s["environment"] for name, s in services.items() if "DATA_DIR" in s.get("environment", {})}


def _python_sources() -> list[Path]:
    return [p for folder in SOURCE_FOLDERS for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts]


def test_every_project_container_gets_every_setting(services: dict[str, Any]) -> None:
    project = _project_services(services)
    assert {"airflow-scheduler", "spark-worker", "dashboard", "kafka-init", "log-generator", "notifier"} <= set(project)
    for name, env in project.items():
        missing = SETTINGS - SECRET_SETTINGS - set(env)
        assert not missing, f"{name} lacks settings {sorted(missing)}"


def test_the_gemini_key_reaches_only_the_analysing_containers(services: dict[str, Any]) -> None:
    holders = {name for name, s in services.items() if "GEMINI_API_KEY" in s.get("environment", {})}
    assert holders == ANALYSIS_SERVICES


def test_object_storage_credentials_reach_only_the_containers_that_use_the_tables(services: dict[str, Any]) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        holders = {name for name, s in services.items() if key in s.get("environment", {})}
        assert holders == TABLE_SERVICES, key


def test_the_ingest_token_reaches_only_the_ingest_container(services: dict[str, Any]) -> None:
    holders = {name for name, s in services.items() if "INGEST_TOKEN" in s.get("environment", {})}
    assert holders == {"log-ingest"}


def test_the_notification_webhook_reaches_only_the_notifier_container(services: dict[str, Any]) -> None:
    holders = {name for name, s in services.items() if "NOTIFY_WEBHOOK_URL" in s.get("environment", {})}
    assert holders == {"notifier"}


@pytest.mark.parametrize("name", ["airflow-scheduler", "spark-worker", "dashboard", "kafka-init", "notifier"])
def test_the_settings_accept_every_value(services: dict[str, Any], name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    env = services[name]["environment"]
    for key in SETTINGS:
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        if key in SETTINGS:
            monkeypatch.setenv(key, str(value))
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.kafka_bootstrap_servers == "kafka:29092"
    assert settings.schema_registry_url == "http://schema-registry:8081"
    assert settings.spark_master == "spark://spark-master:7077"
    assert settings.uses_schema_registry
    assert str(settings.data_dir) == "/data" and str(settings.checkpoint_root) == "/checkpoints"


def test_compose_defaults_equal_the_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """`${VAR:-default}` of a setting must not silently differ from the setting's own default."""
    for key in SETTINGS:
        monkeypatch.delenv(key, raising=False)
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    checked = 0
    for name, default in re.findall(r"\$\{([A-Z][A-Z0-9_]*):-([^}]*)\}", COMPOSE_FILE.read_text()):
        if name not in SETTINGS or name in {"AIRFLOW_PORT", "DASHBOARD_PORT", "SPARK_UI_PORT"}:
            continue  # host ports reuse the settings' names; the port tests check them
        field = name.lower()
        expected = getattr(defaults, field)
        if default == "":
            assert expected in (None, ""), f"${{{name}:-}} is empty but the setting defaults to {expected!r}"
        else:
            actual = getattr(Settings(_env_file=None, **{field: default}), field)  # type: ignore[call-arg]
            assert actual == expected, f"${{{name}:-{default}}} differs from the setting's default {expected!r}"
        checked += 1
    assert checked >= 15, "expected the compose file to pass the tunable settings through"


def test_every_interpolated_variable_is_documented_in_env_example() -> None:
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", COMPOSE_FILE.read_text()))
    example = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", example, flags=re.MULTILINE))
    assert used - documented == set(), "variables docker-compose.yml reads that .env.example does not mention"


def test_every_variable_the_code_reads_is_a_setting_or_known() -> None:
    read: set[str] = set()
    for path in _python_sources():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
                func = ast.unparse(node.func)
                if func in ("os.environ.get", "os.getenv", "environ.get", "getenv"):
                    read.add(str(node.args[0].value))
            elif (isinstance(node, ast.Subscript) and ast.unparse(node.value) in ("os.environ", "environ")
                  and isinstance(node.slice, ast.Constant) and isinstance(node.ctx, ast.Load)):
                read.add(str(node.slice.value))
    unknown = read - SETTINGS - set(PROCESS_VARIABLES)
    assert not unknown, f"the code reads {sorted(unknown)} outside incident_contracts.settings"
    dockerfile = (ROOT / "airflow" / "Dockerfile").read_text()
    assert re.search(r"^ENV PROJECT_ROOT=/opt/incident", dockerfile, flags=re.MULTILINE)


def test_no_project_code_knows_the_compose_addresses() -> None:
    offenders = [f"{path.relative_to(ROOT)}: {address}" for path in _python_sources()
                 for address in COMPOSE_ADDRESSES if address in path.read_text()]
    assert not offenders, f"compose-only addresses in code (they belong in settings): {offenders}"


def test_airflow_connections_are_the_ones_the_settings_build(services: dict[str, Any]) -> None:
    env = services["airflow-scheduler"]["environment"]
    settings = Settings(_env_file=None, spark_master=env["SPARK_MASTER"],  # type: ignore[call-arg]
                        kafka_bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"],
                        schema_registry_url=env["SCHEMA_REGISTRY_URL"], kafka_topic_logs=env["KAFKA_TOPIC_LOGS"])
    assert json.loads(env["AIRFLOW_CONN_SPARK_DEFAULT"]) == spark_connection(settings)
    assert json.loads(env["AIRFLOW_CONN_KAFKA_DEFAULT"]) == kafka_connection(settings)
    for name in ("airflow-api-server", "airflow-dag-processor", "airflow-triggerer"):
        assert services[name]["environment"]["AIRFLOW_CONN_SPARK_DEFAULT"] == env["AIRFLOW_CONN_SPARK_DEFAULT"]


def test_airflow_components_share_their_secrets_and_database(services: dict[str, Any]) -> None:
    keys = ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__CORE__FERNET_KEY",
            "AIRFLOW__API__SECRET_KEY", "AIRFLOW__CORE__EXECUTION_API_SERVER_URL")
    airflow = {n: s["environment"] for n, s in services.items() if n.startswith("airflow-")}
    assert len(airflow) == 5
    for key in keys:
        values = {env.get(key) for env in airflow.values()}
        assert len(values) == 1 and None not in values and "" not in values, f"{key} differs between components"
    password = services["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert f":{password}@postgres:5432/" in airflow["airflow-scheduler"]["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert "AIRFLOW_ADMIN_PASSWORD" in airflow["airflow-api-server"]
    assert all("AIRFLOW_ADMIN_PASSWORD" not in env for n, env in airflow.items() if n != "airflow-api-server")


def test_the_same_dag_runs_in_both_stacks(services: dict[str, Any]) -> None:
    dags = ROOT / "airflow" / "dags"
    dag_file = dags / "incident_processing_pipeline.py"
    assert dag_file.is_file()
    dag_id = re.search(r'^DAG_ID = "([^"]+)"', dag_file.read_text(), flags=re.MULTILINE)
    assert dag_id and dag_id.group(1) in (ROOT / "compose.mk").read_text()
    dockerfile = (ROOT / "airflow" / "Dockerfile").read_text()
    assert "COPY --chown=airflow:0 airflow/dags/ /opt/incident/airflow/dags/" in dockerfile
    assert "AIRFLOW__CORE__DAGS_FOLDER=/opt/incident/airflow/dags" in dockerfile
    # The Spark entry file the DAG submits (PROJECT_ROOT/spark/...) is copied to the same place.
    spark_job = (ROOT / "airflow" / "src" / "incident_airflow" / "spark_job.py").read_text()
    parts = re.search(r'^SPARK_APPLICATION = Path\("([^"]+)"\) / "([^"]+)"', spark_job, flags=re.MULTILINE)
    assert parts, "SPARK_APPLICATION not found in incident_airflow.spark_job"
    application = Path(parts.group(1)) / parts.group(2)
    assert application.parts[0] == "spark" and (ROOT / application).is_file(), (
        f"{application} (submitted by the DAG) is missing")
    assert "COPY --chown=airflow:0 spark/ /opt/incident/spark/" in dockerfile


# --- exposure: published ports, the Kafka UI, the dashboard's login, the replay folder ----------------------

PUBLISH_DEFAULT = "${PUBLISH_HOST:-127.0.0.1}:"


def _bindings(services: dict[str, Any]) -> list[tuple[str, str, int]]:
    """(service, host address, host port) of every published port, as docker-compose resolved them."""
    found = []
    for name, service in services.items():
        for port in service.get("ports", []):
            if isinstance(port, dict):
                found.append((name, str(port.get("host_ip", "")), int(port["published"])))
            else:
                host_ip, published, _ = str(port).rsplit(":", 2) if str(port).count(":") >= 2 else ("", *str(port)
                                                                                                      .split(":"))
                found.append((name, host_ip, int(published)))
    return found


def test_every_published_port_binds_to_localhost_unless_publish_host_opens_it(
        services: dict[str, Any], raw_compose: dict[str, Any], compose_binary: str, compose_env_file: Path,
        tmp_path: Path) -> None:
    bindings = _bindings(services)
    assert {name for name, _, _ in bindings} == {"kafka", "schema-registry", "kafka-ui", "spark-master",
                                                  "airflow-api-server", "airflow-scheduler", "dashboard-proxy",
                                                  "log-ingest"}
    assert all(host == "127.0.0.1" for _, host, _ in bindings), bindings
    for name, service in raw_compose["services"].items():  # written through the one variable, none fixed
        for port in service.get("ports", []):
            assert str(port).startswith(PUBLISH_DEFAULT), f"{name} publishes {port} outside PUBLISH_HOST"
    opened = tmp_path / ".env"
    opened.write_text(compose_env_file.read_text() + "PUBLISH_HOST=0.0.0.0\n")
    result = run_compose(compose_binary, opened, "config", home=tmp_path)
    assert result.returncode == 0, result.stderr
    moved = _bindings(yaml.safe_load(result.stdout)["services"])
    assert len(moved) == len(bindings) and all(host == "0.0.0.0" for _, host, _ in moved), moved


def test_the_kafka_ui_is_read_only_and_asks_for_a_login(services: dict[str, Any]) -> None:
    env = services["kafka-ui"]["environment"]
    assert env["KAFKA_CLUSTERS_0_READONLY"] == "true"
    assert env["AUTH_TYPE"] == "LOGIN_FORM" and env["SPRING_SECURITY_USER_PASSWORD"]


def test_the_dashboard_is_reached_only_through_its_login(services: dict[str, Any]) -> None:
    assert not services["dashboard"].get("ports"), "the dashboard must not publish a port of its own"
    proxy = services["dashboard-proxy"]
    assert proxy["environment"]["DASHBOARD_PASSWORD"] and proxy["environment"]["DASHBOARD_USER"]
    assert any(str(v).endswith("compose/dashboard-proxy/Caddyfile:/etc/caddy/Caddyfile:ro") for v in proxy["volumes"])
    assert "caddy hash-password" in " ".join(proxy["command"])
    caddyfile = (ROOT / "compose" / "dashboard-proxy" / "Caddyfile").read_text()
    code = "\n".join(line.split("#")[0] for line in caddyfile.splitlines())
    # Only the health check is handled before the login; everything else passes basic auth first.
    open_part = re.search(r"handle /_stcore/health \{\s*reverse_proxy dashboard:8501\s*\}", code)
    assert open_part, "the health check route is missing or does more than answer health"
    rest = code[:open_part.start()] + code[open_part.end():]
    guarded = re.search(r"handle \{\s*basicauth \{\s*\{\$DASHBOARD_USER\} \{\$DASHBOARD_PASSWORD_HASH\}\s*\}"
                        r"\s*reverse_proxy dashboard:8501", rest)
    assert guarded and rest.count("reverse_proxy") == 1, "the dashboard is proxied without basic auth"


def test_replays_read_a_read_only_folder_at_replay_dir(services: dict[str, Any]) -> None:
    scheduler = services["airflow-scheduler"]
    folder = scheduler["environment"]["REPLAY_DIR"]
    assert any(str(v).endswith(f":{folder}:ro") for v in scheduler["volumes"]), scheduler["volumes"]
