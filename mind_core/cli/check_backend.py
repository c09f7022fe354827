"""``check-backend``: one call per MIND stage on a built-in pair, with timings and a diagnosis of what is wrong
(:mod:`mind_core.distill.check`)."""

from __future__ import annotations

import argparse
import json

from mind_core.cli.common import add_backend_args, backend_config_from_args, positive, quiet_http_logs

EPILOG = """\
examples:
  python -m mind_core check-backend --backend offline
  python -m mind_core check-backend --backend transformers --model /models/llava-1.5-7b-hf
  python -m mind_core check-backend --backend openai --endpoint http://127.0.0.1:8011/v1 --no-images --no-p-yes
  python -m mind_core check-backend --backend openai --endpoint http://gpu-node:8000/v1 --api-key-env MY_KEY

exit status: 0 every stage works (and images and P(yes), unless --no-images / --no-p-yes); 1 the backend does not
work as needed (the diagnosis says why and what to do); 2 a bad flag.
"""


def register(sub) -> None:
    p = sub.add_parser(
        "check-backend",
        help="test a backend before a long run: one call per stage, latency, images, P(yes), diagnosis",
        description="Start the backend, then send MIND's three requests (describe product A, one usedFor "
        "intention, the role-aware filter with P(yes)) for a built-in pair whose images are drawn on the fly. "
        "Prints the time of each step, whether the model saw the images and whether P(yes) came back, and a "
        "diagnosis when something is wrong (server down, wrong URL or path, model not found, not a vision "
        "model, no chat template, no logprobs, API key refused).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_backend_args(p, required=True)
    p.add_argument("--no-images", action="store_true", help="check text only (as distill --no-images)")
    p.add_argument(
        "--no-p-yes",
        action="store_true",
        help="P(yes) is not needed (e.g. distill --filter critic): a server without logprobs still passes",
    )
    p.add_argument(
        "--max-new-tokens",
        type=positive(int),
        default=48,
        metavar="N",
        help="tokens per answer in the check (default 48)",
    )
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.set_defaults(handler=cmd_check_backend)


def cmd_check_backend(args: argparse.Namespace) -> int:
    from mind_core.distill.check import check_backend
    from mind_core.lvlm.base import GenParams

    quiet_http_logs(args)
    config = backend_config_from_args(args)
    report = check_backend(
        config,
        use_images=not args.no_images,
        need_p_yes=not args.no_p_yes,
        params=GenParams(do_sample=False, temperature=0.0, max_new_tokens=args.max_new_tokens),
    )
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        print("\n".join(report.lines()))
    return 0 if report.ok else 1
