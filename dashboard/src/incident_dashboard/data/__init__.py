"""The Pipeline page's view of Kafka. The tables are read through :mod:`incident_rca.data`."""
