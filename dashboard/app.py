"""Streamlit entry point of the incident dashboard.

    streamlit run dashboard/app.py --server.port $DASHBOARD_PORT --server.headless true
"""

from incident_dashboard.app import main

main()
