"""mind_core.lvlm.registry: one registry of backends, each declaring its options; BackendConfig from the settings
(defaults < environment < flags / widgets), checked the same way for every caller, never showing the API key."""

from __future__ import annotations

import pytest

from mind_core.config import Settings
from mind_core.lvlm import BackendError, backend_names, backends, make_backend
from mind_core.lvlm.registry import BackendConfig, owners_of

ENV = {
    "MIND_BACKEND": "openai",
    "MIND_OPENAI_ENDPOINT": "http://h:1/v1",
    "MIND_OPENAI_MODEL": "m",
    "MIND_OPENAI_TIMEOUT": "7",
    "MIND_MAX_NEW_TOKENS": "64",
    "OPENAI_API_KEY": "sk-secret-123",
}


def test_every_backend_is_registered_with_its_options():
    assert backend_names() == ("offline", "transformers", "openai")
    infos = backends()
    assert infos["offline"].text_only and not infos["openai"].text_only
    assert {o.name for o in infos["openai"].options} >= {"endpoint", "model", "api_key", "concurrency", "timeout_s"}
    assert infos["transformers"].option("model").required and infos["openai"].option("endpoint").required
    assert owners_of("concurrency") == ["openai"] and owners_of("batch_size") == ["transformers"]
    assert not infos["openai"].in_process and infos["transformers"].in_process
    for info in infos.values():  # each class knows its registry name
        assert info.cls.name == info.name


def test_config_from_settings_follows_defaults_env_overrides_and_hides_the_key():
    base = Settings.from_env(ENV)
    assert (base.backend, base.openai_timeout_s, base.max_new_tokens) == ("openai", 7.0, 64)
    cfg = BackendConfig.from_settings(base)
    assert cfg.kind == "openai"
    assert cfg.options == {"endpoint": "http://h:1/v1", "model": "m", "api_key": "sk-secret-123", "timeout_s": 7.0}
    # a form field left empty keeps the setting (bug: the dashboard never sent OPENAI_API_KEY); a typed value wins
    assert BackendConfig.from_settings(base, api_key="", model=None).get("api_key") == "sk-secret-123"
    assert BackendConfig.from_settings(base, api_key="sk-typed").get("api_key") == "sk-typed"
    assert BackendConfig.from_settings(base, endpoint="http://other:2/v1").get("endpoint") == "http://other:2/v1"
    # the key stays out of everything that can be shown or logged
    for text in (repr(cfg), cfg.describe(), repr(cfg.cache_key()), repr(base)):
        assert "sk-secret" not in text
    assert "openai · m at http://h:1/v1" in cfg.describe()
    # another backend takes only its own options from the settings
    assert BackendConfig.from_settings(base, "transformers").options == {}
    assert BackendConfig.from_settings(Settings.from_env({})).kind == "offline"


def test_problems_are_found_without_loading_anything():
    assert "needs --model" in BackendConfig("transformers").problems()[0]
    assert "needs --endpoint" in BackendConfig("openai").problems()[0]
    assert "not an http(s) URL" in BackendConfig("openai", endpoint="localhost:8000").problems()[0]
    assert (
        "--concurrency applies to --backend openai"
        in BackendConfig("transformers", model="m", concurrency=2).problems()[0]
    )
    assert BackendConfig("offline").problems() == []
    assert "text-only fallback" in BackendConfig("offline").describe()
    assert "unknown backend" in BackendConfig("gpt").problems()[0]
    with pytest.raises(BackendError, match="--batch-size applies to --backend transformers"):
        make_backend("openai", endpoint="http://127.0.0.1:9/v1", batch_size=4)


def test_bad_environment_values_keep_the_default_and_say_so():
    s = Settings.from_env({"MIND_OPENAI_TIMEOUT": "soon", "MIND_BACKEND": "gpt", "MIND_MAX_NEW_TOKENS": "0"})
    assert (s.openai_timeout_s, s.backend, s.max_new_tokens) == (None, "offline", 512)
    assert len(s.problems) == 3 and any("MIND_OPENAI_TIMEOUT" in p for p in s.problems)
    assert Settings.from_env({"MIND_ENDPOINT": "http://old:1/v1"}).openai_endpoint == "http://old:1/v1"
    both = {"MIND_OPENAI_ENDPOINT": "http://new:1/v1", "MIND_ENDPOINT": "http://old:1/v1"}
    assert Settings.from_env(both).openai_endpoint == "http://new:1/v1"  # the main name wins over the alias
