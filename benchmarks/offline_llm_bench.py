"""Offline fallback speed, side by side: one built-in pair x 3 relations through MIND's real prompts.

Every "pair" row runs :func:`mind_core.distill.pipeline.run_pair` (stage 1 describes both products, whose
descriptions are cleared; stage 2 writes 3 intentions; stage 3 filters them: 8 backend calls) on the pair and the
PIL-drawn images of :mod:`mind_core.distill.check`, so the prompts, prefills and filter questions are the
pipeline's own. Options:

* ``a``  today's default before this benchmark: the transformers engine (float32 weights dequantised from the
  GGUF), MIND's decoding (sampling, T=0.2);
* ``b``  the transformers engine tuned: torch threads = cores, greedy, ``torch.inference_mode`` (already), plus a
  decode probe with ``cache_implementation="static"`` and a 3-sequence batch (the backend generates one request at
  a time);
* ``c``  ``torch.compile`` of the forward, given at most ``--compile-limit`` seconds (probe only);
* ``d``  ``transformers serve --continuous-batching`` with the 3 intention prompts at once and one by one
  (aggregate tok/s, prompt processing included);
* ``e1`` the ``xllamacpp`` engine (llama.cpp's in-process server from a prebuilt wheel), MIND's decoding and greedy;
* ``e2`` onnxruntime-genai with an int4 model built locally from the dequantised SmolLM2 folder (decode probe:
  it needs the builder's extra package ``onnx-ir`` and is not a backend engine).

Decode probes: 64 forced new tokens (end token banned) after a 150-token chat prompt, tok/s of the decode.
Before measuring it waits (30 s polls, up to ``--max-wait`` s) for the 1-minute load average to drop below
``--quiet-load`` and records the load with every row.

    PYTHONPATH=$PWD python benchmarks/offline_llm_bench.py [--options a,b,c,e1,e2] [--json out.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from mind_core.distill.check import PRODUCT_A, PRODUCT_B, sample_images
from mind_core.distill.pipeline import DistillOptions, run_pair
from mind_core.lvlm.base import GenParams
from mind_core.lvlm.offline.backend import OfflineBackend

RELATIONS = ("usedFor", "capableOf", "isA")
GREEDY = GenParams(do_sample=False, temperature=0.0)
PROBE_TOKENS = 64


def load1() -> float:
    return os.getloadavg()[0]


def wait_quiet(threshold: float, max_wait: float) -> float:
    t0 = time.monotonic()
    while load1() >= threshold and time.monotonic() - t0 < max_wait:
        print(f"load {load1():.2f} >= {threshold}: waiting 30 s", file=sys.stderr, flush=True)
        time.sleep(30)
    return load1()


class Timed(OfflineBackend):
    """The offline backend, recording the generation time and new tokens of every call."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.calls: list[dict] = []

    def _one(self, req, params):
        resp = super()._one(req, params)
        self.calls.append({"seconds": resp.meta.get("seconds"), "new_tokens": resp.meta.get("new_tokens", 0)})
        return resp

    def _complete(self, ids, params, max_new, min_new=0):
        t0 = time.perf_counter()
        out = super()._complete(ids, params, max_new, min_new)
        self.calls_gen = getattr(self, "calls_gen", []) + [(time.perf_counter() - t0, out[1])]
        return out


def pair_run(label: str, engine: str, params: GenParams) -> dict:
    load_before = load1()
    be = Timed(engine=engine)
    t0 = time.perf_counter()
    be.load()
    a = dataclasses.replace(PRODUCT_A, description="")
    b = dataclasses.replace(PRODUCT_B, description="")
    mug, bag = sample_images()
    opts = DistillOptions(relations=list(RELATIONS), params=dataclasses.replace(params, seed=0))
    res = run_pair(a, b, be, opts, images={a.asin: mug, b.asin: bag})
    wall = time.perf_counter() - t0
    gen_s = sum(s for s, _ in be.calls_gen)
    gen_tok = sum(n for _, n in be.calls_gen)
    row = {
        "option": label,
        "engine": engine,
        "decoding": "greedy" if not params.do_sample else f"sampling T={params.temperature}",
        "load_s": round(be.load_seconds or 0.0, 2),
        "calls": len(be.calls),
        "s_per_call": round(sum(c["seconds"] or 0 for c in be.calls) / max(1, len(be.calls)), 2),
        "pair_x3_s": round(wall, 1),
        "gen_tok_s": round(gen_tok / gen_s, 1) if gen_s else None,
        "new_tokens": gen_tok,
        "rows": len(res.rows),
        "errors": res.errors,
        "load_avg": f"{load_before:.2f} -> {load1():.2f}",
        "texts": [r["intention"] for r in res.rows]
        + [f"{r.get('verdict')} p_yes={r.get('p_yes')}" for r in res.rows]
        + list(res.descriptions.values()),
    }
    be.close()
    return row


def probe_prompt(tok) -> list[int]:
    text = tok.apply_chat_template(
        [{"role": "user", "content": "Describe a red coffee mug and a bag of ground coffee in detail. " * 8}],
        add_generation_prompt=True,
        tokenize=False,
    )
    return tok.encode(text, add_special_tokens=False)


def hf_probes(compile_limit: float) -> list[dict]:
    import torch

    be = OfflineBackend(engine="transformers").load()
    model, tok = be._llm, be._tok
    ids = torch.tensor([probe_prompt(tok)])
    rows = []

    def decode(label: str, batch: int = 1, **kw) -> dict:
        x = ids.repeat(batch, 1)
        common = dict(
            attention_mask=torch.ones_like(x),
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            pad_token_id=tok.eos_token_id,
            **kw,
        )
        with torch.inference_mode():
            t0 = time.perf_counter()
            model.generate(input_ids=x, max_new_tokens=1, **common)
            prefill = time.perf_counter() - t0
            t0 = time.perf_counter()
            model.generate(input_ids=x, max_new_tokens=PROBE_TOKENS, min_new_tokens=PROBE_TOKENS, **common)
            total = time.perf_counter() - t0
        dec = max(1e-9, total - prefill)
        return {
            "probe": label,
            "threads": torch.get_num_threads(),
            "decode_tok_s": round(batch * (PROBE_TOKENS - 1) / dec, 1),
            "seconds": round(total, 1),
            "load_avg": f"{load1():.2f}",
        }

    with torch.inference_mode():
        model.generate(input_ids=ids, max_new_tokens=4, pad_token_id=tok.eos_token_id)  # warm-up
    rows.append(decode("b transformers, dynamic cache (today)"))
    rows.append(decode("b transformers, cache_implementation=static", cache_implementation="static"))
    rows.append(decode("b transformers, 3 sequences in one generate (aggregate)", batch=3))
    # c: torch.compile, in a thread so that a compile beyond the limit is reported, not waited for
    result: dict = {}

    def compiled():
        try:
            t0 = time.perf_counter()
            model.forward = torch.compile(model.forward, dynamic=True)
            with torch.inference_mode():
                model.generate(input_ids=ids, max_new_tokens=2, pad_token_id=tok.eos_token_id)
            result["compile_s"] = round(time.perf_counter() - t0, 1)
            result["row"] = decode("c transformers + torch.compile(dynamic=True)")
        except Exception as err:
            result["error"] = f"{type(err).__name__}: {str(err)[:200]}"

    th = threading.Thread(target=compiled, daemon=True)
    th.start()
    th.join(compile_limit)
    if th.is_alive():
        rows.append({"probe": "c torch.compile", "result": f"compile not done after {compile_limit:.0f} s: skipped"})
    elif "error" in result:
        rows.append({"probe": "c torch.compile", "result": result["error"]})
    else:
        rows.append({**result["row"], "compile_s": result["compile_s"]})
    return rows, be._cache_path()


def xllamacpp_probe() -> dict:
    be = OfflineBackend(engine="xllamacpp").load()
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(OfflineBackend(engine="transformers")._cache_path(), local_files_only=True)
    ids = probe_prompt(tok)
    out = be._llm.handle_completions(
        {"prompt": ids, "n_predict": PROBE_TOKENS, "temperature": 0.0, "ignore_eos": True, "cache_prompt": False}
    )
    t = out["timings"]
    be.close()
    return {
        "probe": "e1 xllamacpp (llama.cpp, Q4_1 kernels)",
        "threads": os.cpu_count(),
        "decode_tok_s": round(t["predicted_per_second"], 1),
        "seconds": round((t["prompt_ms"] + t["predicted_ms"]) / 1000, 2),
        "load_s": round(be.load_seconds, 2),
        "load_avg": f"{load1():.2f}",
    }


def ort_probe(hf_folder: Path, site: str | None) -> dict:
    """onnxruntime-genai: build an int4 model from the local folder (timed), then the same decode probe."""
    out_dir = Path(tempfile.mkdtemp(prefix="ort-int4-"))
    env = dict(os.environ)
    if site:
        env["PYTHONPATH"] = f"{site}:{env.get('PYTHONPATH', '')}"
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(hf_folder), "-o", str(out_dir)]
    cmd += ["-p", "int4", "-e", "cpu", "-c", str(out_dir / "cache")]
    build = subprocess.run(cmd, env=env, capture_output=True, text=True)
    build_s = time.perf_counter() - t0
    if build.returncode != 0:
        return {"probe": "e2 onnxruntime-genai int4", "result": f"builder failed: {build.stderr[-300:]}"}
    code = f"""
import json, time, sys
import onnxruntime_genai as og
from transformers import AutoTokenizer
sys.path.insert(0, {str(Path(__file__).parent)!r})
from offline_llm_bench import probe_prompt, PROBE_TOKENS
tok = AutoTokenizer.from_pretrained({str(hf_folder)!r}, local_files_only=True)
ids = probe_prompt(tok)
t0 = time.perf_counter(); model = og.Model({str(out_dir)!r}); load = time.perf_counter() - t0
def run(n):
    gp = og.GeneratorParams(model)
    gp.set_search_options(max_length=len(ids) + n, min_length=len(ids) + n, do_sample=False)
    g = og.Generator(model, gp)
    t0 = time.perf_counter(); g.append_tokens(ids); g.generate_next_token(); first = time.perf_counter() - t0
    while not g.is_done():
        g.generate_next_token()
    return first, time.perf_counter() - t0
run(4)
first, total = run(PROBE_TOKENS)
print(json.dumps({{"load": load, "first": first, "total": total}}))
"""
    probe = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if probe.returncode != 0:
        return {"probe": "e2 onnxruntime-genai int4", "result": f"run failed: {probe.stderr[-300:]}"}
    r = json.loads(probe.stdout.strip().splitlines()[-1])
    return {
        "probe": "e2 onnxruntime-genai int4 (built locally)",
        "threads": os.cpu_count(),
        "decode_tok_s": round((PROBE_TOKENS - 1) / (r["total"] - r["first"]), 1),
        "seconds": round(r["total"], 2),
        "load_s": round(r["load"], 2),
        "build_s": round(build_s, 1),
        "load_avg": f"{load1():.2f}",
    }


def serve_probe(hf_folder: Path, port: int = 8019) -> list[dict]:
    """d: ``transformers serve --continuous-batching`` on 127.0.0.1 with the 3 intention prompts of the pair,
    sent at once (3 threads) and then one after another; 64 new tokens each, greedy."""
    import httpx

    from mind_core.distill.prompts import intention_request

    reqs = [intention_request(PRODUCT_A, PRODUCT_B, r, None) for r in RELATIONS]
    cmd = [sys.executable, "-m", "transformers.cli.transformers", "serve", str(hf_folder), "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--continuous-batching"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/v1"
    rows = []
    try:
        t0 = time.monotonic()
        while True:
            if proc.poll() is not None:
                return [{"probe": "d transformers serve --continuous-batching", "result": proc.stderr.read()[-300:]}]
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() - t0 > 180:
                return [{"probe": "d transformers serve --continuous-batching", "result": "not up after 180 s"}]
            time.sleep(1)

        def ask(req, out, i):
            body = {
                "model": str(hf_folder),
                "messages": [{"role": "system", "content": req.system}, {"role": "user", "content": req.prompt}],
                "max_tokens": PROBE_TOKENS,
                "temperature": 0,
            }
            r = httpx.post(f"{url}/chat/completions", json=body, timeout=600)
            out[i] = r.json() if r.status_code == 200 else {"error": r.text[:200]}

        for label, concurrent in (("3 concurrent", True), ("3 one after another", False)):
            out: dict = {}
            t0 = time.perf_counter()
            if concurrent:
                ths = [threading.Thread(target=ask, args=(q, out, i)) for i, q in enumerate(reqs)]
                [t.start() for t in ths]
                [t.join() for t in ths]
            else:
                for i, q in enumerate(reqs):
                    ask(q, out, i)
            wall = time.perf_counter() - t0
            errs = [o["error"] for o in out.values() if "error" in o]
            toks = sum(o.get("usage", {}).get("completion_tokens", 0) for o in out.values() if "error" not in o)
            rows.append(
                {
                    "probe": f"d transformers serve --continuous-batching, {label}",
                    "decode_tok_s": round(toks / wall, 1),
                    "seconds": round(wall, 1),
                    "threads": os.cpu_count(),
                    "load_avg": f"{load1():.2f}",
                    **({"result": errs[0]} if errs else {}),
                }
            )
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--options", default="a,b,c,e1,e2")
    p.add_argument("--quiet-load", type=float, default=2.0)
    p.add_argument("--max-wait", type=float, default=600.0)
    p.add_argument("--compile-limit", type=float, default=120.0)
    p.add_argument("--ort-site", default=None, help="extra site folder holding onnxruntime_genai and onnx_ir")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    opts = set(args.options.split(","))
    start_load = wait_quiet(args.quiet_load, args.max_wait)
    print(f"load average at start: {start_load:.2f} (cores: {os.cpu_count()})", flush=True)
    pairs, probes = [], []
    if "a" in opts:
        pairs.append(pair_run("a today: transformers, sampling", "transformers", GenParams()))
    if "b" in opts:
        pairs.append(pair_run("b transformers, greedy", "transformers", GREEDY))
    if "e1" in opts:
        pairs.append(pair_run("e1 xllamacpp, sampling", "xllamacpp", GenParams()))
        pairs.append(pair_run("e1 xllamacpp, greedy", "xllamacpp", GREEDY))
    hf_folder = OfflineBackend(engine="transformers")._cache_path()
    if "b" in opts or "c" in opts:
        rows, hf_folder = hf_probes(args.compile_limit)
        probes += rows
    if "d" in opts:
        probes += serve_probe(hf_folder)
    if "e1" in opts:
        probes.append(xllamacpp_probe())
    if "e2" in opts:
        probes.append(ort_probe(hf_folder, args.ort_site))
    base = next((r["pair_x3_s"] for r in pairs if r["option"].startswith("a ")), None)
    print("\n| option | engine | decoding | calls | s / call | pair x 3 relations (s) | gen tok/s | vs a | load |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in pairs:
        ratio = f"{base / r['pair_x3_s']:.1f}x" if base else "-"
        print(
            f"| {r['option']} | {r['engine']} | {r['decoding']} | {r['calls']} | {r['s_per_call']} | "
            f"{r['pair_x3_s']} | {r['gen_tok_s']} | {ratio} | {r['load_avg']} |"
        )
    base_tok = next((r["decode_tok_s"] for r in probes if "today" in r.get("probe", "")), None)
    print("\n| decode probe (64 forced tokens) | decode tok/s | vs today | s | notes | load |")
    print("|---|---|---|---|---|---|")
    for r in probes:
        if "decode_tok_s" not in r or "result" in r:
            print(f"| {r['probe']} | - | - | - | {r['result']} | |")
            continue
        ratio = f"{r['decode_tok_s'] / base_tok:.1f}x" if base_tok else "-"
        notes = ", ".join(f"{k} {r[k]}" for k in ("load_s", "build_s", "compile_s", "threads") if k in r)
        print(f"| {r['probe']} | {r['decode_tok_s']} | {ratio} | {r['seconds']} | {notes} | {r['load_avg']} |")
    for r in pairs:
        print(f"\n[{r['option']}] rows={r['rows']} errors={r['errors']}")
        for t in r["texts"]:
            print("  -", str(t)[:200])
    if args.json:
        Path(args.json).write_text(json.dumps({"pairs": pairs, "probes": probes}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
