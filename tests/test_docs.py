"""The README and docs/ stay true to the code: every environment variable documented, the relation table equal to
the one in schema.py, every link to a file or a heading resolving, no reference to notes outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mind_core.config import ENV_VARS
from mind_core.schema import EXTRA_RELATION_PHRASES, RELATION_PHRASES

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "data").glob("*/README.md"))]


def _anchor(heading: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_readme_documents_every_environment_variable():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [v.name for v in ENV_VARS if f"| `{v.name}` |" not in readme]
    assert not missing, f"README's Configuration table lacks {missing}"


def test_relations_page_equals_the_schema():
    text = (ROOT / "docs" / "relations.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `(\w+)`(?: \(extra\))? \| (.*?) \|$", text, flags=re.M))
    want = {k: (v or "(empty)") for k, v in {**RELATION_PHRASES, **EXTRA_RELATION_PHRASES}.items()}
    assert rows == want


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve(doc):
    text = doc.read_text(encoding="utf-8")
    bad = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target) or target.startswith("mailto:"):
            continue
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.exists():
            bad.append(f"{target}: no such file")
            continue
        if anchor and file.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", file.read_text(encoding="utf-8"), flags=re.M)
            if anchor not in {_anchor(h) for h in headings}:
                bad.append(f"{target}: no heading with that anchor")
    assert not bad, bad


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_reference_to_notes_outside_the_repository(doc):
    text = doc.read_text(encoding="utf-8")
    for pattern in (r"\.\./shared", r"/work/", r"TESTING_NOTES", r"OFFLINE_MODELS", r"design notes?\b"):
        assert not re.search(pattern, text), f"{doc.name} mentions {pattern}"
