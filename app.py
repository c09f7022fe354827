"""MIND Explorer dashboard entry point: ``streamlit run app.py [-- --kb DIR]``.

Navigation only; every page is a short script under ``dashboard/views/`` (listed in ``dashboard.ui.PAGES``) and all
computation is in ``mind_core``.
"""

import streamlit as st

from dashboard.ui import PAGES

st.set_page_config(page_title="MIND Explorer", page_icon="🛒", layout="wide")

nav = st.navigation(
    [
        st.Page(script, title=title, icon=icon, url_path=url, default=(i == 0))
        for i, (script, title, icon, url, _purpose) in enumerate(PAGES)
    ]
)
nav.run()
