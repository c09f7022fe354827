"""The LVLM answer cache of the IntentionQA methods: a killed run resumes, a repeated run asks nothing again."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mind_core import io
from mind_core.eval.intentionqa.questions import Question


class AnswerCache:
    """Append-only JSONL of LVLM answers: one line per (question, method, backend, model, prompt).

    A torn last line (the process was killed mid-write) is ignored when reading."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path else None
        self._data: dict[str, dict[str, Any]] = {}
        if self.path:
            for rec in io.read_jsonl(self.path):
                if "cache_key" in rec:
                    self._data[rec["cache_key"]] = rec

    @staticmethod
    def key(q: Question, method: str, backend: str, model: str, prompt: str) -> str:
        digest = hashlib.sha1(prompt.encode("utf-8")).hexdigest()[:16]
        return f"{q.key}|{method}|{backend}|{model}|{digest}"

    def get(self, key: str) -> dict[str, Any] | None:
        return self._data.get(key)

    def __len__(self) -> int:
        return len(self._data)

    def add_many(self, records: Sequence[dict[str, Any]]) -> None:
        for rec in records:
            self._data[rec["cache_key"]] = rec
        if self.path and records:
            io.append_jsonl(self.path, records, durable=False)
