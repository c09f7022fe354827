"""Input loaders: our JSONL/Parquet KB layout (``kb_files``) and Amazon Review 2018 metadata (``amazon``)."""

from mind_core.data.kb_files import LoadReport, load_inputs

__all__ = ["LoadReport", "load_inputs"]
