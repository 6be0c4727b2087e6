"""Environment of the embedded Airflow: its home, DAGs folder, port, size, and connections from settings.

Connections are given as AIRFLOW_CONN_* variables built from the project's settings, so nobody
creates them by hand and they always match the broker and Spark master the rest of the stack uses.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import string
import sys
from pathlib import Path

from incident_contracts.settings import Settings, project_root


def spark_connection(settings: Settings) -> dict:
    """`spark_default`: SparkSubmitHook takes the master from host (and port for spark://)."""
    master = settings.spark_master
    if master.startswith("spark://"):
        host, _, port = master.rpartition(":")
        return {"conn_type": "spark", "host": host, "port": int(port),
                "extra": {"deploy-mode": "client", "spark-binary": "spark-submit"}}
    return {"conn_type": "spark", "host": master, "extra": {"deploy-mode": "client", "spark-binary": "spark-submit"}}


def kafka_connection(settings: Settings) -> dict:
    """`kafka_default`: the broker (and registry) the pipeline talks to, visible in the Airflow UI."""
    extra = {"bootstrap.servers": settings.kafka_bootstrap_servers, "topic": settings.kafka_topic_logs}
    if settings.schema_registry_url:
        extra["schema.registry.url"] = settings.schema_registry_url
    return {"conn_type": "generic", "host": settings.kafka_bootstrap_servers, "extra": extra}


def airflow_home(settings: Settings) -> Path:
    return settings.runtime_dir / "airflow"


def passwords_file(settings: Settings) -> Path:
    """Airflow's simple auth manager's passwords file (its default place under AIRFLOW_HOME)."""
    return airflow_home(settings) / "simple_auth_manager_passwords.json.generated"


def ensure_admin_password(settings: Settings) -> None:
    """Generate the `admin` user's password into Airflow's passwords file (mode 600) unless it holds one.

    Airflow generates a missing password itself at its first start, and prints it on its standard output:
    into the service's log file. A password already in the file is not printed."""
    if admin_password(settings):
        return
    path = passwords_file(settings)
    try:
        known = json.loads(path.read_text() or "{}")
    except FileNotFoundError:
        known = {}
    except ValueError:
        return  # not Airflow's JSON: left for Airflow to report, never overwritten
    if not isinstance(known, dict):
        return
    password = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(20))
    staged = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({**known, "admin": password}, handle)
    try:
        os.replace(staged, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            staged.unlink()


def airflow_env(settings: Settings) -> dict[str, str]:
    """Variables that configure the embedded Airflow (added to the project's own settings variables); the
    admin password is generated beforehand (:func:`ensure_admin_password`), so Airflow never logs it."""
    home = airflow_home(settings)
    home.mkdir(parents=True, exist_ok=True)
    ensure_admin_password(settings)
    bin_dir = str(Path(sys.executable).parent)
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(project_root() / "airflow" / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": str(settings.airflow_parallelism),
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(settings.airflow_parallelism),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(settings.airflow_port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{settings.airflow_port}",
        # New DAG files are found within 10 s; a known file is parsed again at most every 30 s (each
        # parse imports the pipeline's packages: more often costs CPU the streaming job needs).
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        # Tasks report to the API server; on a busy 2-core machine it can take longer than the default
        # 5 s to answer, and a task whose start is not acknowledged fails before it runs.
        "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "30",
        "AIRFLOW_CONN_SPARK_DEFAULT": json.dumps(spark_connection(settings)),
        "AIRFLOW_CONN_KAFKA_DEFAULT": json.dumps(kafka_connection(settings)),
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
    }


def admin_password(settings: Settings) -> str | None:
    """The generated password of the `admin` user, once Airflow has started."""
    try:
        return json.loads(passwords_file(settings).read_text()).get("admin")
    except (OSError, ValueError, AttributeError):
        return None
