"""Issue 16 (3, 12): local and shared deployment. Local (bound to 127.0.0.1, `make run`): typed server URLs, model
folders and files are accepted. Shared (bound to another address, or MIND_SHARED=1): only what the operator
configured is offered, as select boxes; the server's API key goes only to configured endpoints; error messages
echo nothing the model server answered."""

from __future__ import annotations

import pytest

TRY = "dashboard/views/try_product.py"
IQA = "dashboard/views/intentionqa.py"


def _keys(widgets) -> set[str]:
    return {w.key for w in widgets}


def _shown(at) -> str:
    parts = [e.value for e in at.error] + [w.value for w in at.warning] + [c.value for c in at.caption]
    parts += [m.value for m in at.markdown] + [i.value for i in at.info]
    return "\n".join(str(p) for p in parts)


def test_the_dashboard_passes_streamlit_server_address_into_the_settings():
    from streamlit import config as st_config

    from dashboard import ui

    before = st_config.get_option("server.address")
    try:
        st_config.set_option("server.address", "127.0.0.1")
        assert ui.settings().server_address == "127.0.0.1" and ui.settings().mode == "local"
        st_config.set_option("server.address", "0.0.0.0")
        assert ui.settings().mode == "shared"
        st_config.set_option("server.address", None)  # unset: Streamlit listens on every interface
        assert ui.settings().mode == "shared"
    finally:
        st_config.set_option("server.address", before)


def test_local_mode_offers_free_text_fields(open_page):
    at = open_page(TRY, MIND_BACKEND="openai")
    assert not at.exception, at.exception
    assert "try_endpoint" in _keys(at.text_input)  # any URL: the person at this machine runs it
    at = open_page(IQA)
    assert "iqa_file_typed" in _keys(at.text_input)
    assert "kb_typed" in _keys(at.text_input)


def test_shared_mode_offers_only_configured_choices(open_page, tmp_path):
    env = {
        "MIND_SHARED": "1",
        "MIND_BACKEND": "openai",
        "MIND_ENDPOINTS": "http://127.0.0.1:9/v1, http://127.0.0.1:10/v1",
        "MIND_MODELS": str(tmp_path / "some-model"),
    }
    at = open_page(TRY, **env)
    assert not at.exception, at.exception
    free_text = _keys(at.text_input) - {"try_api_key", "try_A_title", "try_A_cat", "try_B_title", "try_B_cat"}
    assert not free_text, free_text  # no URL, model, file or folder can be typed
    assert at.selectbox(key="try_endpoint").options == ["http://127.0.0.1:9/v1", "http://127.0.0.1:10/v1"]
    assert at.selectbox(key="try_openai_model").options == ["the server's first model"]
    at.radio(key="try_backend").set_value("transformers").run()
    assert at.selectbox(key="try_transformers_model").options == [str(tmp_path / "some-model")]
    assert not _keys(at.text_input) - {"try_api_key", "try_A_title", "try_A_cat", "try_B_title", "try_B_cat"}
    at.radio(key="try_backend").set_value("offline").run()
    assert "try_model" not in _keys(at.text_input)  # no GGUF path either
    at = open_page(IQA, **env)
    assert not _keys(at.text_input) - {"iqa_api_key"}, _keys(at.text_input)


def test_shared_mode_without_configured_servers_offers_only_the_offline_fallback(open_page):
    at = open_page(TRY, MIND_SHARED="1", MIND_BACKEND="openai")
    assert not at.exception, at.exception
    assert at.radio(key="try_backend").options == ["offline fallback (no GPU, text only)"]


def test_shared_mode_sends_the_key_to_configured_endpoints_and_echoes_no_server_text(
    open_page, fake_openai, run_iqa_lvlm
):
    fake_openai.set(api_key="sk-operator")
    env = {
        "MIND_SHARED": "1",
        "MIND_BACKEND": "openai",
        "MIND_ENDPOINTS": fake_openai.url,
        "OPENAI_API_KEY": "sk-operator",
    }
    at = open_page(IQA, **env)
    assert run_iqa_lvlm(at, fake_openai) == {"Bearer sk-operator"}

    fake_openai.set(mode="404")  # its answer names the route and the model: a visitor must not read it
    at.number_input(key="iqa_seed").set_value(1)
    at.button[0].click().run()
    assert not at.exception, at.exception
    shown = _shown(at)
    assert at.error and "does not exist" not in shown, shown
    # the configured URL is on the page (its select box); the messages do not name it
    assert not any(str(fake_openai.port) in e.value for e in at.error), [e.value for e in at.error]


def test_local_mode_keeps_the_details(open_page, fake_openai):
    fake_openai.set(mode="404")
    at = open_page(IQA, MIND_BACKEND="openai", MIND_OPENAI_ENDPOINT=fake_openai.url)
    at.multiselect(key="iqa_methods").set_value(["lvlm"])
    at.number_input(key="iqa_n").set_value(5)
    at.button[0].click().run()
    assert "does not exist" in _shown(at).replace("\\", "")


@pytest.mark.parametrize(
    ("shared", "endpoint", "expect"),
    [
        (False, "http://typed.example/v1", "sk-env"),  # local: the person at this machine chose the URL
        (True, "http://configured:8000/v1/", "sk-env"),
        (True, "http://typed.example/v1", ""),  # shared: never to an address a visitor chose
    ],
)
def test_the_server_key_goes_only_where_the_mode_allows(shared, endpoint, expect):
    from mind_core.config import Settings

    s = Settings.from_env({"OPENAI_API_KEY": "sk-env", "MIND_ENDPOINTS": "http://configured:8000/v1"})
    s = s.replace(shared=shared)
    assert s.api_key_for(endpoint) == expect
