"""check-backend's diagnoses, each against a local server or model that really has the problem (the fake
OpenAI-compatible server's knobs, a closed port, tiny random models); real ``transformers serve`` cases are in
test_serve.py."""

from __future__ import annotations

import socket

import pytest

from mind_core.cli.main import main as cli_main
from mind_core.distill.check import check_backend, classify
from mind_core.lvlm.registry import BackendConfig


def _codes(report) -> list[str]:
    return [d.code for d in report.diagnoses]


def _cfg(srv, **kw) -> BackendConfig:
    return BackendConfig("openai", endpoint=kw.pop("endpoint", srv.url), model=kw.pop("model", srv.model), **kw)


def test_a_working_server_passes_with_exit_0(fake_openai, capsys):
    fake_openai.set(filter_answer="yes")
    code = cli_main(["check-backend", "--backend", "openai", "--endpoint", fake_openai.url, "--no-images"])
    out = capsys.readouterr().out
    assert code == 0, out
    for stage in ("connect", "start", "describe", "intend", "filter"):
        assert f"ok   {stage}" in out
    assert "P(yes): 0.842" in out and "result: every stage works" in out


def test_server_down():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    report = check_backend(BackendConfig("openai", endpoint=f"http://127.0.0.1:{port}/v1"))
    assert not report.ok and _codes(report) == ["server_down"]
    assert f"127.0.0.1:{port}" in report.diagnoses[0].message


def test_wrong_path_suggests_the_v1_base(fake_openai):
    report = check_backend(_cfg(fake_openai, endpoint=fake_openai.url.replace("/v1", "/api/v3")))
    assert _codes(report) == ["wrong_url"]
    assert f"use --endpoint {fake_openai.url}" in report.diagnoses[0].message


def test_model_not_found_lists_the_served_models(fake_openai):
    fake_openai.set(mode="404")
    report = check_backend(_cfg(fake_openai, model="no-such-model"), use_images=False)
    assert _codes(report) == ["model_not_found"] and fake_openai.model in report.diagnoses[0].message


def test_no_logprobs_fails_unless_p_yes_is_not_needed(fake_openai, capsys):
    fake_openai.set(logprobs=False, filter_answer="yes")
    report = check_backend(_cfg(fake_openai), use_images=False)
    assert not report.ok and _codes(report) == ["no_logprobs"] and report.stage("filter").ok
    args = ["check-backend", "--backend", "openai", "--endpoint", fake_openai.url, "--no-images"]
    assert cli_main(args) == 1
    assert cli_main([*args, "--no-p-yes"]) == 0
    capsys.readouterr()


def test_api_key_refused(fake_openai):
    fake_openai.set(api_key="right")
    report = check_backend(_cfg(fake_openai, api_key="wrong"))
    assert _codes(report) == ["auth"]


def test_not_a_vision_model_transformers(tiny_text_only_dir):
    report = check_backend(BackendConfig("transformers", model=str(tiny_text_only_dir)))
    assert _codes(report) == ["not_vision"] and not report.stage("start").ok


def test_no_chat_template_transformers(tiny_llava_dir, tmp_path):
    import shutil

    folder = tmp_path / "no_template"
    shutil.copytree(tiny_llava_dir, folder)
    for name in ("chat_template.jinja", "chat_template.json"):
        (folder / name).unlink(missing_ok=True)
    for name in ("tokenizer_config.json", "processor_config.json"):
        path = folder / name
        if path.is_file():
            import json

            data = json.loads(path.read_text())
            data.pop("chat_template", None)
            path.write_text(json.dumps(data))
    report = check_backend(BackendConfig("transformers", model=str(folder)))
    assert _codes(report) == ["no_chat_template"]


def test_a_bad_flag_is_exit_2(capsys):
    assert cli_main(["check-backend", "--backend", "openai", "--endpoint", "localhost:8000"]) == 2
    assert "not an http(s) URL" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("cannot reach the OpenAI-compatible server at http://h/v1 (All connection attempts failed)", "server_down"),
        (
            "HTTP 400 from http://h/v1/chat/completions: model 'x' is not served (Server is pinned to 'y')",
            "model_not_found",
        ),
        ("'m' ships no chat template; pass chat_template=<jinja string or file>", "no_chat_template"),
        ("'m' is not a vision-language model this backend can load", "not_vision"),
        ("HTTP 404 from http://h/v9/chat/completions: no route", "wrong_url"),
        ("timed out after 5 s waiting for http://h", "timeout"),
        ("something else", "error"),
    ],
)
def test_classify(message, code):
    assert classify(message) == code
