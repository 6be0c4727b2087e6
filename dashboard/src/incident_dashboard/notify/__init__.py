"""Notifications of incident transitions: routing rules, payloads (generic JSON, Slack, Alertmanager) and
the notifier loop that reads ``incident_updates`` beside the Spark job (never inside it)."""
