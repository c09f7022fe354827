"""``make serve-local``: a real OpenAI-compatible server (``transformers serve``) on 127.0.0.1, with no GPU.

By default it serves the offline fallback's model, SmolLM2-135M-Instruct: the float32 copy the offline backend
dequantised from the packaged GGUF (``<cache>/offline-llm/``; made now, ~40-60 s, when it is missing). ``--model``
serves any model folder or Hugging Face id instead (a tiny random vision model from the tests, a VLM on a GPU box).
The server is ``transformers serve MODEL --host 127.0.0.1 --port PORT`` (needs requirements-serve.txt: fastapi,
openai, uvicorn); this process becomes it (``exec``), so Ctrl-C stops it.

Use it with ``--backend openai --endpoint http://127.0.0.1:PORT/v1``. What differs from other servers (no
logprobs, images dropped for a text-only model): :mod:`mind_core.lvlm.openai_backend`.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys

from mind_core.lvlm.base import BackendError


def default_model_dir() -> str:
    """The dequantised SmolLM2 folder of the offline fallback (made from the GGUF when missing)."""
    from mind_core.lvlm.offline.backend import OfflineBackend

    backend = OfflineBackend(engine="transformers")
    folder = backend._cache_path()
    if not (folder / "config.json").is_file():
        print(f"making the float32 copy of {backend.model} in {folder} (once, ~1 min) ...", file=sys.stderr)
        backend.load()
        backend.close()
    if not (folder / "config.json").is_file():
        raise BackendError(f"could not write the dequantised model to {folder}; pass --model FOLDER")
    return str(folder)


def serve_command(model: str, port: int, host: str = "127.0.0.1") -> list[str]:
    """The ``transformers serve`` command line (CPU unless a GPU is there: ``--device auto``)."""
    return [
        sys.executable,
        "-m",
        "transformers.cli.transformers",
        "serve",
        model,
        "--host",
        host,
        "--port",
        str(int(port)),
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mind_core.lvlm.serve_local", description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, default=8011)
    p.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1: this machine only)")
    p.add_argument(
        "--model", default=None, help="model folder or HF id (default: SmolLM2-135M of the offline fallback)"
    )
    args = p.parse_args(argv)
    missing = [m for m in ("fastapi", "uvicorn", "openai") if importlib.util.find_spec(m) is None]
    if missing:
        print(
            f"error: transformers serve needs {', '.join(missing)}: pip install -r requirements-serve.txt",
            file=sys.stderr,
        )
        return 2
    try:
        model = args.model or default_model_dir()
    except BackendError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    cmd = serve_command(model, args.port, args.host)
    print(f"serving {model} at http://{args.host}:{args.port}/v1 (Ctrl-C stops it)", file=sys.stderr)
    sys.stdout.flush()
    os.execv(cmd[0], cmd)
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
