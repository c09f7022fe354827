"""AppTest of the IntentionQA page: the no-model and LVLM methods, and the API key from the environment."""

from __future__ import annotations

import pytest

PAGE = "dashboard/views/intentionqa.py"


@pytest.fixture()
def page(open_page):
    return lambda **env: open_page(PAGE, 240, **env)


def test_overlap_and_embed_methods_give_accuracies(page):
    at = page()
    assert not at.exception, at.exception
    at.multiselect(key="iqa_methods").set_value(["overlap", "embed"])
    at.number_input(key="iqa_n").set_value(10)
    at.button[0].click().run()  # the form's Run button
    assert not at.exception, at.exception
    summary = at.dataframe[0].value
    assert set(summary["method"]) == {"overlap", "embed"}
    assert summary["accuracy"].between(0, 1).all()


def test_lvlm_method_sends_the_api_key_from_the_environment(page, fake_openai, run_iqa_lvlm):
    # issue 11 (a): the IntentionQA page sent no API key at all
    fake_openai.set(api_key="sk-iqa-env")
    at = page(MIND_BACKEND="openai", MIND_OPENAI_ENDPOINT=fake_openai.url, OPENAI_API_KEY="sk-iqa-env")
    assert not at.exception, at.exception
    assert at.radio(key="iqa_backend").value == "openai"
    assert run_iqa_lvlm(at, fake_openai) == {"Bearer sk-iqa-env"}
    assert set(at.dataframe[0].value["method"]) == {"lvlm"}


@pytest.mark.parametrize(
    ("typed", "env_key", "named", "not_named"),
    [
        ("sk-typed-wrong", "", "the API key field", "$OPENAI_API_KEY"),  # issue 16 (12): it said $OPENAI_API_KEY
        ("", "sk-env-wrong", "$OPENAI_API_KEY", "the API key field"),
    ],
)
def test_a_rejected_key_is_named_by_where_it_came_from(page, fake_openai, typed, env_key, named, not_named):
    fake_openai.set(api_key="sk-right")
    at = page(MIND_BACKEND="openai", MIND_OPENAI_ENDPOINT=fake_openai.url, OPENAI_API_KEY=env_key)
    at.text_input(key="iqa_api_key").set_value(typed)
    at.multiselect(key="iqa_methods").set_value(["lvlm"])
    at.number_input(key="iqa_n").set_value(5)
    at.button[0].click().run()
    assert not at.exception, at.exception
    errors = " ".join(e.value.replace("\\", "") for e in at.error)
    assert "401" in errors and named in errors and not_named not in errors
    assert "sk-typed-wrong" not in errors and "sk-env-wrong" not in errors
