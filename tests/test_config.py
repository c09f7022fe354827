"""mind_core.config: defaults < environment < overrides, bad values reported, the key never in a repr."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mind_core import config
from mind_core.config import ENV_VARS, Settings


def test_defaults_without_environment():
    s = Settings.from_env({})
    assert s.kb_dir == config.INDEXES_DIR / "sample"
    assert s.backend == "offline" and s.embed_model == "all-MiniLM-L6-v2"
    assert s.openai_timeout_s is None and s.max_new_tokens == 512 and s.problems == ()


def test_environment_fills_every_documented_setting(tmp_path):
    env = {
        "MIND_KB": str(tmp_path / "kb"),
        "MIND_CACHE_DIR": str(tmp_path / "c"),
        "MIND_USER_DATA": str(tmp_path / "u"),
        "MIND_REVIEW_DB": "postgresql+psycopg://rev:pw@db/reviews",
        "MIND_EMBED_MODEL": "some/model",
        "MIND_INTENTIONQA_DIR": str(tmp_path / "q"),
        "MIND_CRITIC": str(tmp_path / "critic"),
        "MIND_BACKEND": "OpenAI",
        "MIND_TRANSFORMERS_MODEL": "/models/llava",
        "MIND_OPENAI_ENDPOINT": "http://127.0.0.1:9/v1",
        "MIND_OPENAI_MODEL": "m",
        "MIND_OPENAI_TIMEOUT": "2.5",
        "MIND_MAX_NEW_TOKENS": "64",
        "MIND_MAX_FIELD_CHARS": "5000",
        "OPENAI_API_KEY": "sk-secret",
        "HF_ENDPOINT": "http://127.0.0.1:1",
        "HF_HUB_OFFLINE": "1",
        "MIND_SHARED": "1",
        "MIND_ENDPOINTS": "http://a:1/v1, http://b:2/v1,,",
        "MIND_MODELS": "/models/x,org/y",
        "MIND_KB_ROOTS": f"{tmp_path / 'r1'}{os.pathsep}{tmp_path / 'r2'}",
        "MIND_RAY_ADDRESS": "auto",
        "MIND_RAY_NUM_CPUS": "6",
        "MIND_RAY_MAX_RETRIES": "5",
    }
    s = Settings.from_env(env)
    assert s.kb_dir == tmp_path / "kb" and isinstance(s.kb_dir, Path) and s.critic_dir == tmp_path / "critic"
    assert (s.backend, s.openai_endpoint, s.openai_timeout_s, s.max_new_tokens) == (
        "openai",
        "http://127.0.0.1:9/v1",
        2.5,
        64,
    )
    assert s.max_field_chars == 5000
    assert s.review_db_url == "postgresql+psycopg://rev:pw@db/reviews" and "pw@" not in repr(s)
    assert s.openai_api_key == "sk-secret" and s.hf_hub_offline is True and s.problems == ()
    assert s.shared is True and s.endpoints == ("http://a:1/v1", "http://b:2/v1") and s.models == ("/models/x", "org/y")
    assert s.kb_roots == (tmp_path / "r1", tmp_path / "r2")
    assert (s.ray_address, s.ray_num_cpus, s.ray_max_retries) == ("auto", 6, 5)
    assert s.offered_endpoints == ("http://127.0.0.1:9/v1", "http://a:1/v1", "http://b:2/v1")
    assert s.offered_models == ("/models/llava", "/models/x", "org/y")
    # every variable in the table was used by this test: a new one must be added here too
    assert {v.name for v in ENV_VARS} - set(env) == {"MIND_ENDPOINT"}


def test_the_default_critic_is_the_shipped_one_and_none_turns_it_off():
    assert Settings.from_env({}).critic_dir == config.DEFAULT_CRITIC_DIR
    for off in ("none", "OFF", "0"):
        assert Settings.from_env({"MIND_CRITIC": off}).critic_dir is None


def test_alias_is_used_only_when_the_main_name_is_unset():
    assert Settings.from_env({"MIND_ENDPOINT": "http://a/v1"}).openai_endpoint == "http://a/v1"
    both = {"MIND_ENDPOINT": "http://a/v1", "MIND_OPENAI_ENDPOINT": "http://b/v1"}
    assert Settings.from_env(both).openai_endpoint == "http://b/v1"


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        ("MIND_OPENAI_TIMEOUT", "soon", "not a number"),
        ("MIND_OPENAI_TIMEOUT", "-1", "must be > 0"),
        ("MIND_MAX_NEW_TOKENS", "lots", "not a whole number"),
        ("MIND_MAX_NEW_TOKENS", "0", "must be >= 1"),
        ("MIND_BACKEND", "gpt", "not one of offline, transformers, openai"),
    ],
)
def test_bad_values_keep_the_default_and_say_why(var, value, message):
    s = Settings.from_env({var: value})
    assert s == Settings()
    assert len(s.problems) == 1 and var in s.problems[0] and message in s.problems[0]


def test_overrides_win_and_none_keeps(tmp_path):
    base = Settings.from_env({"MIND_KB": "/a", "MIND_BACKEND": "openai"})
    s = base.replace(kb_dir=str(tmp_path), backend=None)
    assert s.kb_dir == tmp_path and s.backend == "openai"
    assert base.kb_dir == Path("/a")  # frozen: the original is unchanged
    with pytest.raises(TypeError, match="unknown setting"):
        base.replace(kb=tmp_path)
    with pytest.raises(AttributeError):
        base.backend = "offline"  # type: ignore[misc]


def test_the_api_key_stays_out_of_repr_and_comparisons():
    s = Settings.from_env({"OPENAI_API_KEY": "sk-do-not-log"})
    assert "sk-do-not-log" not in repr(s) and "sk-do-not-log" not in str(s)
    assert s == Settings()


def test_settings_reads_the_environment_afresh(monkeypatch, tmp_path):
    monkeypatch.setenv("MIND_CACHE_DIR", str(tmp_path / "one"))
    assert config.settings().cache_dir == tmp_path / "one"
    monkeypatch.setenv("MIND_CACHE_DIR", str(tmp_path / "two"))
    assert config.cache_dir("x") == tmp_path / "two" / "x" and (tmp_path / "two" / "x").is_dir()


@pytest.mark.parametrize(
    ("address", "shared_env", "mode"),
    [
        ("127.0.0.1", None, "local"),
        ("localhost", None, "local"),
        ("::1", None, "local"),
        ("0.0.0.0", None, "shared"),
        ("", None, "shared"),  # Streamlit's default: every interface
        ("192.168.1.20", None, "shared"),
        ("127.0.0.1", "1", "shared"),
        ("0.0.0.0", "0", "local"),  # the operator says so (e.g. a container reached through a local port only)
    ],
)
def test_deployment_mode(address, shared_env, mode):
    env = {} if shared_env is None else {"MIND_SHARED": shared_env}
    assert Settings.from_env(env).replace(server_address=address).mode == mode
    assert Settings.from_env({}).mode == "local"  # the CLI: this machine


def test_kb_folders_are_allowed_only_inside_the_kb_roots(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "kb").mkdir(parents=True)
    (outside / "kb").mkdir(parents=True)
    (root / "link").symlink_to(outside / "kb")
    s = Settings.from_env({"MIND_KB_ROOTS": str(root), "MIND_USER_DATA": str(tmp_path / "user")})
    s = s.replace(kb_dir=tmp_path / "configured")
    assert s.kb_allowed(root / "kb") and s.kb_allowed(root / "not-yet-built")
    assert s.kb_allowed(tmp_path / "configured")  # MIND_KB / --kb: the operator's choice
    assert s.kb_allowed(tmp_path / "user" / "my-products") and s.kb_allowed(config.INDEXES_DIR / "sample")
    assert not s.kb_allowed(outside / "kb")
    assert not s.kb_allowed(root / ".." / "outside" / "kb")
    assert not s.kb_allowed(root / "link")  # a link out of a root
    assert not s.kb_allowed("/etc") and not s.kb_allowed("")
