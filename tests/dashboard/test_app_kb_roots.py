"""Issue 16 (5): the sidebar opens KB folders under the KB roots only (indexes/, the user-data folder,
MIND_KB_ROOTS), answers anything else with one message that does not tell whether the path exists, and keeps a
bounded number of KBs loaded."""

from __future__ import annotations

import shutil

import pytest

HOME = "dashboard/views/home.py"


@pytest.fixture(scope="module")
def kb_copies(sample_kb_dir, tmp_path_factory):
    """The sample KB copied into a KB root and into a folder outside every root."""
    base = tmp_path_factory.mktemp("kb_roots")
    inside, outside = base / "root" / "copy", base / "outside" / "copy"
    for dest in (inside, outside):
        shutil.copytree(sample_kb_dir, dest)
    return base, inside, outside


def _errors(at) -> list[str]:
    return [e.value for e in at.error]


def test_only_kb_roots_are_opened_with_one_message_for_anything_else(open_page, kb_copies, tmp_path):
    base, inside, outside = kb_copies
    at = open_page(HOME, MIND_KB_ROOTS=str(base / "root"))
    assert not at.exception, at.exception
    assert str(inside) in at.selectbox(key="kb_select").options  # the root's KB is offered

    not_a_kb = tmp_path / "plain-folder"
    not_a_kb.mkdir()
    messages = {}
    for typed in (
        str(outside),  # a real KB outside the roots
        str(tmp_path / "does-not-exist"),
        str(not_a_kb),  # exists, no manifest
        "/etc",
        str(base / "root" / ".." / "outside" / "copy"),  # out of a root through ..
        str(base / "root" / "missing"),  # inside a root, nothing there
    ):
        at.text_input(key="kb_typed").input(typed).run()
        assert not at.exception, at.exception
        messages[typed] = _errors(at)
        assert at.session_state["kb_path"] != typed
        assert at.metric  # the KB loaded before stays loaded
    assert len({tuple(m) for m in messages.values()}) == 1, messages  # the same text, whatever the path
    (message,) = next(iter(messages.values()))
    assert "MIND_KB_ROOTS" in message
    for typed in messages:
        assert typed not in message.replace("\\", "")

    at.text_input(key="kb_typed").input(str(inside)).run()  # inside a root: opened
    assert not at.exception and not _errors(at), _errors(at)
    assert at.session_state["kb_path"] == str(inside)


def test_the_kb_cache_is_bounded():
    from dashboard import ui

    assert 1 <= ui.load_kb._info.max_entries <= 8
