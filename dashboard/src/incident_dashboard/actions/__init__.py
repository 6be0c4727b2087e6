"""What people do on an incident: the audit records of ``incident_actions`` and the human status they give."""
