"""Human review of a KB's intentions: the rating protocol (:mod:`.protocol`), the answers database (:mod:`.store`,
SQLAlchemy; SQLite in WAL mode by default), the review queues (:mod:`.queue`), the statistics (:mod:`.analysis`:
agreement, human vs filter, human vs scores) and files in and out (:mod:`.exchange`).

The layer sits above ``kb`` and ``query`` (it reads opened KBs and their scores) and below the CLI and the dashboard.
"""
