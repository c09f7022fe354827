"""Real ``transformers serve`` servers for the LVLM tests (session-scoped: each starts once, ~5-10 s).

Each server runs ``python -m transformers.cli.transformers serve FOLDER --host 127.0.0.1 --port P --device cpu``
pinned to a tiny random model built from configs (tests/doubles), on a free port; the fixture waits for
``GET /health`` (up to 180 s) and stops the process by its PID. The tests that need one are skipped, with the
reason, only when ``transformers serve`` cannot run here: its serving extra (fastapi, openai, uvicorn:
requirements-serve.txt) is not installed. A server that is installed but does not come up is a failure, with the
end of its log.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

READY_TIMEOUT_S = 180.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServedModel:
    def __init__(self, folder: Path, log_path: Path):
        self.folder, self.log_path = folder, log_path
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.model = str(folder)
        cmd = [sys.executable, "-m", "transformers.cli.transformers", "serve", str(folder)]
        cmd += ["--host", "127.0.0.1", "--port", str(self.port), "--device", "cpu", "--log-level", "info"]
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def log_tail(self, n: int = 3000) -> str:
        return self.log_path.read_bytes()[-n:].decode("utf-8", "replace")

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"transformers serve exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"transformers serve not ready after {READY_TIMEOUT_S:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._log.close()


def _serve(folder: Path, log_path: Path):
    missing = [m for m in ("fastapi", "uvicorn", "openai") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(
            f"transformers serve needs its serving extra ({', '.join(missing)} missing): "
            "pip install -r requirements-serve.txt"
        )
    srv = ServedModel(folder, log_path)
    try:
        srv.wait_ready()
    except RuntimeError:
        srv.stop()
        raise
    return srv


@pytest.fixture(scope="session")
def served_text_lm(tiny_text_only_dir, tmp_path_factory):
    """``transformers serve`` pinned to a tiny random text-only Llama."""
    srv = _serve(tiny_text_only_dir, tmp_path_factory.mktemp("serve_text") / "server.log")
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def served_vlm(tiny_llava_dir, tmp_path_factory):
    """``transformers serve`` pinned to a tiny random LLaVA (a vision-language model)."""
    srv = _serve(tiny_llava_dir, tmp_path_factory.mktemp("serve_vlm") / "server.log")
    yield srv
    srv.stop()
