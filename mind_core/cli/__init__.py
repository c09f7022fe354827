"""``python -m mind_core``: the command line (``main``) and one module per command group."""
