"""The Streamlit app: page navigation, sidebar controls and the page scripts' shared setup."""

from __future__ import annotations

import streamlit as st

from incident_dashboard.ui import common
from incident_rca.service import engine_for

PAGES = (
    ("views/overview.py", "Overview", ":material/monitoring:", "overview"),
    ("views/incidents.py", "Incidents", ":material/format_list_bulleted:", "incidents"),
    ("views/incident.py", "Incident detail", ":material/troubleshoot:", "incident"),
    ("views/pipeline.py", "Pipeline", ":material/account_tree:", "pipeline"),
)

_STYLE = """
<style>
.block-container {padding-top: 3.2rem; padding-bottom: 2rem; max-width: 1500px;}
[data-testid="stMetricValue"] {font-size: 1.65rem;}
[data-testid="stMetricLabel"] p {font-size: 0.85rem; color: #5c6370;}
h1 {font-size: 1.75rem !important;}
h3 {font-size: 1.12rem !important; margin-top: 0.2rem;}
</style>
"""


def main() -> None:
    st.set_page_config(page_title="Incident intelligence", page_icon=":material/emergency_home:", layout="wide")
    st.html(_STYLE)
    cfg = common.settings()
    pages = [st.Page(path, title=title, icon=icon, url_path=url, default=(url == "overview"))
             for path, title, icon, url in PAGES]
    navigation = st.navigation(pages, position="top")
    _sidebar(cfg)
    navigation.run()


def _sidebar(cfg) -> None:
    with st.sidebar:
        st.markdown("### :material/emergency_home: Incident intelligence")
        st.segmented_control("Auto-refresh", list(common.REFRESH_CHOICES), default="30 s", key=common.REFRESH_KEY,
                             help="Pages re-query the tables in place at this interval, without reloading.")
        if st.button("Refresh now", icon=":material/refresh:", width="stretch"):
            common.repository().refresh_all(force=True)
            st.rerun()
        st.divider()
        engine, model, _ = engine_for(cfg)
        if engine == "gemini":
            st.caption(f":material/smart_toy: Analysis: Gemini `{model}`")
        else:
            st.caption(":material/menu_book: Analysis: offline runbook matcher (set GEMINI_API_KEY for Gemini)")
        st.caption(f":material/folder: Data: `{cfg.data_dir}`")
        links = common.ui_links(cfg)
        st.caption(" · ".join(f"[{name}]({url})" for name, url in links.items() if url))
