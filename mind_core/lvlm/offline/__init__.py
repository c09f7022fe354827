"""The offline fallback: image facts (OCR + colours) for a small local LLM from a PyPI package."""
