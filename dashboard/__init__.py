"""The Streamlit dashboard: the only package that imports streamlit. Entry point: ``app.py``."""
