"""Regression tests for the embedding loader (issue 11, bugs b and d)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from mind_core.kb import embed


def test_one_encoder_per_model_whatever_its_name():
    # (d): None, the short name and the hub id of the packaged default are one cache entry, one load
    default = embed.get_embedder(None)
    assert embed.get_embedder("all-MiniLM-L6-v2") is default
    assert embed.get_embedder(None, "torch") is embed.get_embedder("sentence-transformers/all-MiniLM-L6-v2", "torch")
    assert embed.get_embedder("sentence-transformers/all-MiniLM-L6-v2") is default
    assert embed.get_embedder(" all-MiniLM-L6-v2 ") is default
    assert default.model_name == "all-MiniLM-L6-v2"


def test_loading_the_default_model_leaves_the_hub_online():
    # (b): loading MiniLM once must not switch the whole process to offline mode; a fresh interpreter shows it
    code = (
        "import json, os\n"
        "from mind_core.kb.embed import get_embedder\n"
        "e = get_embedder(None, 'torch')\n"
        "v = e.encode(['a hat for the sun'])\n"
        "import huggingface_hub.constants as c\n"
        "print(json.dumps({'env': os.environ.get('HF_HUB_OFFLINE'), 'hub': bool(c.HF_HUB_OFFLINE),"
        " 'dim': int(v.shape[1])}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"env": None, "hub": False, "dim": 384}
