"""Flag helpers shared by the commands that talk to an LVLM (distill, rescore, eval)."""

from __future__ import annotations

import argparse
import os

BACKEND_CHOICES = ("offline", "transformers", "openai")


def positive(kind: type):
    """argparse type: a number of ``kind`` that must be > 0."""

    def conv(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    return conv


def add_backend_args(p, *, required: bool) -> None:
    """--backend, --model, --endpoint, --api-key-env, --concurrency, --batch-size (same meaning everywhere)."""
    p.add_argument(
        "--backend",
        required=required,
        choices=BACKEND_CHOICES,
        help="offline = text-only fallback (no GPU, no network); transformers = local folder or HF id; "
        "openai = any OpenAI-compatible server (vLLM, SGLang, Ollama ...)",
    )
    p.add_argument(
        "--model",
        metavar="M",
        help="model folder / HF id (transformers), model name (openai; default: "
        "the server's), or a .gguf path (offline)",
    )
    p.add_argument("--endpoint", metavar="URL", help="OpenAI-compatible base URL, e.g. http://localhost:8000/v1")
    p.add_argument(
        "--api-key-env",
        metavar="VAR",
        default=None,
        help="name of the environment variable holding the API key (default: OPENAI_API_KEY if set); "
        "the key itself is never taken on the command line",
    )
    p.add_argument(
        "--concurrency", type=positive(int), metavar="C", help="parallel requests (openai backend; default 8)"
    )
    p.add_argument("--batch-size", type=positive(int), metavar="B", help="generation batch size (transformers)")


def backend_from_args(args: argparse.Namespace):
    """Build the backend the flags ask for (raises BackendError / UserError with a next step)."""
    from mind_core.cli.main import UserError
    from mind_core.lvlm import make_backend

    options: dict = {}
    if args.concurrency is not None:
        if args.backend != "openai":
            raise UserError("--concurrency applies to --backend openai; use --batch-size for transformers")
        options["concurrency"] = args.concurrency
    if args.batch_size is not None:
        if args.backend == "openai":
            raise UserError("--batch-size applies to --backend transformers; use --concurrency for openai")
        if args.backend == "transformers":
            options["batch_size"] = args.batch_size
    api_key = None
    if args.backend == "openai":
        var = args.api_key_env or ("OPENAI_API_KEY" if os.environ.get("OPENAI_API_KEY") else None)
        if var:
            api_key = os.environ.get(var)
            if args.api_key_env and not api_key:
                raise UserError(f"--api-key-env {var}: that environment variable is not set or empty")
    elif args.api_key_env:
        raise UserError("--api-key-env applies to --backend openai only")
    if args.endpoint and args.backend != "openai":
        raise UserError("--endpoint applies to --backend openai only")
    return make_backend(args.backend, model=args.model, endpoint=args.endpoint, api_key=api_key, **options)
