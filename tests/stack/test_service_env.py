"""Which secrets each process of the embedded stack and of the cluster tier gets in its environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from incident_contracts.settings import SECRET_GRANTS, Settings, inherited_env, load_settings, settings_env
from incident_stack.cluster import ClusterLayout, cluster_services, cluster_settings
from incident_stack.services import SERVICES

GEMINI_KEY = "gemini-key-" + "9" * 20
AWS_ID = "AKIA" + "Z" * 16
AWS_SECRET = "aws-secret-" + "x" * 29
SESSION_TOKEN = "session-token-" + "y" * 20
WEBHOOK_URL = "https://hooks.slack.example/services/T0001/B0002/" + "w" * 24
OTHER_SECRETS = {"GITHUB_TOKEN": "ghp_" + "g" * 36, "POSTGRES_PASSWORD": "pg-password-456",
                 "MY_SERVICE_API_KEY": "unrelated-api-key-1"}


@pytest.fixture
def secret_settings(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings with the Gemini key and object-storage credentials, in a process whose environment holds
    them and other secrets too (as a developer's shell might)."""
    monkeypatch.setenv("GEMINI_API_KEY", GEMINI_KEY)
    monkeypatch.setenv("NOTIFY_WEBHOOK_URL", WEBHOOK_URL)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", AWS_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)
    for name, value in OTHER_SECRETS.items():
        monkeypatch.setenv(name, value)
    return load_settings()


def _secrets_in(env: dict[str, str]) -> set[str]:
    """Which of the secrets appear anywhere in the environment (names or values)."""
    values = "\n".join(env.values())
    found = {name for name, secret in {"gemini": GEMINI_KEY, "aws_id": AWS_ID, "aws_secret": AWS_SECRET,
                                        "aws_session": SESSION_TOKEN, "webhook": WEBHOOK_URL}.items()
             if secret in values}
    return found | {name for name, secret in OTHER_SECRETS.items() if secret in values}


def test_embedded_services_get_only_the_secrets_they_use(secret_settings: Settings) -> None:
    envs = {name: service.environment(secret_settings) for name, service in SERVICES.items()}
    assert _secrets_in(envs["broker"]) == set()
    assert envs["broker"]["GEMINI_API_KEY"] == "" and envs["broker"]["AWS_SECRET_ACCESS_KEY"] == ""
    for name in ("airflow", "dashboard"):  # triage and the Analyse button call Gemini; both use the tables
        assert _secrets_in(envs[name]) == {"gemini", "aws_id", "aws_secret", "aws_session"}, name
        assert envs[name]["GEMINI_API_KEY"] == GEMINI_KEY
    # The tables and its webhook, no Gemini key; nobody else gets the webhook, set empty so no .env supplies it.
    assert _secrets_in(envs["notifier"]) == {"aws_id", "aws_secret", "aws_session", "webhook"}
    assert envs["notifier"]["NOTIFY_WEBHOOK_URL"] == WEBHOOK_URL
    for name, env in envs.items():
        if name != "notifier":
            assert env["NOTIFY_WEBHOOK_URL"] == "", name
    for env in envs.values():
        assert "GITHUB_TOKEN" not in env and "POSTGRES_PASSWORD" not in env
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == secret_settings.kafka_bootstrap_servers


def test_cluster_processes_get_only_the_secrets_they_use(secret_settings: Settings) -> None:
    tier = cluster_settings(secret_settings)
    services = cluster_services(tier, ClusterLayout.from_settings(tier))
    expected = {"airflow-scheduler": {"gemini", "aws_id", "aws_secret", "aws_session"},
                "dashboard": {"gemini", "aws_id", "aws_secret", "aws_session"},
                "spark-worker-1": {"aws_id", "aws_secret", "aws_session"},  # executors write the tables
                "spark-worker-2": {"aws_id", "aws_secret", "aws_session"},
                "notifier": {"aws_id", "aws_secret", "aws_session", "webhook"}}  # the tables and its webhook
    seen = {name: _secrets_in(service.environment(tier)) for name, service in services.items()}
    for name, found in seen.items():
        assert found == expected.get(name, set()), name
    assert services["dashboard"].environment(tier)["NOTIFY_WEBHOOK_URL"] == ""
    assert {"kafka-1", "spark-master", "postgres", "airflow-api-server", "airflow-triggerer"} <= set(seen)


def test_an_ungranted_secret_is_set_empty_so_dot_env_cannot_supply_it(isolated_env: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = isolated_env / "secrets.env"
    env_file.write_text(f"GEMINI_API_KEY={GEMINI_KEY}\nNOTIFY_WEBHOOK_URL={WEBHOOK_URL}\n")
    monkeypatch.setenv("ENV_FILE", str(env_file))
    settings = load_settings()
    assert settings.gemini_api_key is not None and settings.notify_webhook_url is not None
    broker_env = SERVICES["broker"].environment(settings)
    # A Python child reading the same .env with this environment: the empty variable wins over the file.
    for name, value in broker_env.items():
        monkeypatch.setenv(name, value)
    child = load_settings()
    assert child.gemini_api_key is None and child.notify_webhook_url is None


def test_every_secret_setting_has_a_grant_and_unknown_grants_fail() -> None:
    secret_fields = {name for name, field in Settings.model_fields.items() if "SecretStr" in str(field.annotation)}
    assert secret_fields == {name for names in SECRET_GRANTS.values() for name in names}
    with pytest.raises(ValueError, match="unknown secret grants"):
        settings_env(Settings(_env_file=None), ("everything",))  # type: ignore[call-arg]
    assert inherited_env((), {"PATH": "/bin", "AIRFLOW__CORE__FERNET_KEY": "f", "DB_PASSWORD": "p"}) == {"PATH": "/bin"}
