"""log-ingest: logs over HTTP into the log topic."""
