"""The three MIND stages — describe, intend, role-aware filter — for one pair (live) or for many (batched).

One pair (the "try a product" page)::

    for event in iter_pair(a, b, backend, DistillOptions(relations=["usedFor", "isA"]), should_cancel=stop):
        ...  # event.kind: see PairEvent
    # or: result = run_pair(a, b, backend, options, on_event=callback)

Many pairs (the batch CLI): :func:`run_pairs` runs stage 1 for every product of the chunk that needs it, then
stage 2 for every (pair, relation), then stage 3 for every intention, each stage as ONE ``backend.generate`` call so
the transformers backend can batch and the OpenAI backend can run requests concurrently.

Output rows follow :data:`mind_core.schema.INTENTION_COLUMNS`. Flags (comma list): ``no_phrase``,
``over_length`` (kept, see :mod:`~mind_core.distill.parsing`), ``text_only`` (the backend cannot see pixels or
the pair had no image at all), ``one_image`` (only one of the two products had an image; the other half of the
stacked image is a placeholder), ``filter_unparsed`` (the filter answer began with neither yes nor no),
``not_filtered`` (single-pair run stopped before the filter).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from PIL import Image

from mind_core import images as img
from mind_core.distill.parsing import flags_text, join_prefill, parse_filter, parse_intention, strip_artefacts
from mind_core.distill.prompts import describe_request, filter_request, intention_opening, intention_request
from mind_core.lvlm import answer_text
from mind_core.lvlm.base import Backend, BackendError, GenParams, LVLMRequest, LVLMResponse, source_label
from mind_core.schema import INTENTION_COLUMNS, RELATIONS, Product, intention_id, pair_id

log = logging.getLogger(__name__)

DESCRIBE_MODES = ("missing", "always", "never")


@dataclass
class DistillOptions:
    """What to run and how. Defaults follow MIND: sampling, temperature 0.2, up to 512 new tokens."""

    relations: Sequence[str] = RELATIONS
    params: GenParams = field(default_factory=GenParams)
    #: decoding for the filter answers (default: ``params``)
    filter_params: GenParams | None = None
    #: fetch product images (``False``: text only, no network)
    use_images: bool = True
    #: skip a pair when either product has no usable image (instead of the text fallback for that product)
    require_images: bool = False
    #: stage 1: "missing" (only products without a description), "always", or "never"
    describe: str = "missing"
    #: run stage 3 (the role-aware filter)
    run_filter: bool = True
    image_timeout: float = 2.0
    image_cache_dir: str | Path | None = None
    #: threads used to fetch the images of a chunk
    image_workers: int = 8

    def __post_init__(self) -> None:
        if self.describe not in DESCRIBE_MODES:
            raise ValueError(f"describe must be one of {DESCRIBE_MODES}, got {self.describe!r}")
        self.relations = list(self.relations)


def now_utc() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def make_row(
    a: Product,
    b: Product,
    relation: str,
    intention: str,
    *,
    source: str,
    flags: Sequence[str] = (),
    verdict: str | None = None,
    reason: str | None = None,
    p_yes: float | None = None,
    created_at: str | None = None,
) -> dict:
    """One KB intentions row (all of :data:`INTENTION_COLUMNS`)."""
    row = {
        "intention_id": intention_id(a.asin, b.asin, relation, source),
        "pair_id": pair_id(a.asin, b.asin),
        "asin_a": a.asin,
        "asin_b": b.asin,
        "relation": relation,
        "intention": intention,
        "verdict": verdict,
        "reason": reason,
        "p_yes": None if p_yes is None else float(p_yes),
        "category": a.category or "",
        "source": source,
        "created_at": created_at or now_utc(),
        "tail": None,
        "flags": flags_text(list(flags)),
    }
    assert tuple(row) == INTENTION_COLUMNS
    return row


def _add_flags(row: dict, *extra: str) -> None:
    row["flags"] = flags_text([*(row["flags"].split(",") if row["flags"] else []), *extra])


# --- images ----------------------------------------------------------------------------------------------------


def product_images(
    products: Sequence[Product], options: DistillOptions, provided: Mapping[str, Image.Image | None] | None = None
) -> tuple[dict[str, Image.Image | None], dict[str, str]]:
    """First image of each product (``provided`` wins over fetching ``image_urls``). Returns
    ``(images, failures)`` where ``failures[asin]`` says why a product has no image."""
    out: dict[str, Image.Image | None] = {}
    failures: dict[str, str] = {}
    todo: list[Product] = []
    for p in dict((p.asin, p) for p in products).values():
        if provided is not None and p.asin in provided:
            out[p.asin] = provided[p.asin]
            if provided[p.asin] is None:
                failures[p.asin] = "no image given"
        elif not options.use_images:
            out[p.asin] = None  # not a failure: the user turned images off
        else:
            todo.append(p)
    if todo:

        def fetch(p: Product):
            return img.fetch_first_image(p.image_urls, timeout=options.image_timeout, cache_dir=options.image_cache_dir)

        workers = max(1, min(options.image_workers, len(todo)))
        if workers == 1:
            results = [fetch(p) for p in todo]
        else:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="img") as pool:
                results = list(pool.map(fetch, todo))
        for p, (image, reason) in zip(todo, results):
            out[p.asin] = image
            if image is None:
                failures[p.asin] = reason or "no image"
    return out, failures


def pair_image(image_a: Image.Image | None, image_b: Image.Image | None) -> tuple[Image.Image | None, list[str]]:
    """The stacked stage-2/3 image and the flags it implies: both images -> stacked; one -> stacked with a
    placeholder for the other (``one_image``); none -> ``None`` (``text_only``)."""
    if image_a is None and image_b is None:
        return None, ["text_only"]
    if image_a is None or image_b is None:
        present = image_a or image_b
        assert present is not None
        ph = img.placeholder_image(present.size if max(present.size) <= 1024 else (512, 512))
        return img.stack_pair(image_a or ph, image_b or ph), ["one_image"]
    return img.stack_pair(image_a, image_b), []


# --- one pair --------------------------------------------------------------------------------------------------


@dataclass
class PairResult:
    a: Product
    b: Product
    #: KB rows (complete ones first; rows whose filter did not run carry the ``not_filtered`` flag)
    rows: list[dict] = field(default_factory=list)
    #: stage-1 descriptions written in this run, by ASIN
    descriptions: dict[str, str] = field(default_factory=dict)
    images: dict[str, Image.Image | None] = field(default_factory=dict)
    image_failures: dict[str, str] = field(default_factory=dict)
    stacked: Image.Image | None = None
    #: per-call failures: {"stage", "asin" | "relation", "error"}
    errors: list[dict] = field(default_factory=list)
    cancelled: bool = False
    #: the backend failed as a whole (BackendError); the message says what to do
    fatal_error: str | None = None
    done_calls: int = 0
    total_calls: int = 0


@dataclass
class PairEvent:
    """A progress event of :func:`iter_pair`. ``kind`` and the fields it sets:

    * ``"start"``: ``total`` (planned backend calls)
    * ``"image"``: ``asin``, ``image`` (or ``None``), ``text`` = failure reason or ``None``
    * ``"describe"``: ``asin``, ``text`` (stage-1 description)
    * ``"stacked"``: ``image`` (the stacked pair image, or ``None`` when neither product has one)
    * ``"intention"``: ``relation``, ``row`` (KB row, verdict still ``None``)
    * ``"filter"``: ``relation``, ``row`` (the same row with verdict, reason, p_yes)
    * ``"error"``: ``stage`` ("describe" / "intention" / "filter" / "backend" / "images"), ``asin`` or
      ``relation``, ``text`` = message
    * ``"cancelled"``: the cancel check returned true; what finished is kept
    * ``"done"``: ``result`` (:class:`PairResult`) — always the last event

    ``done`` / ``total`` count backend calls on every event.
    """

    kind: str
    asin: str | None = None
    relation: str | None = None
    text: str | None = None
    image: Image.Image | None = None
    row: dict | None = None
    stage: str | None = None
    done: int = 0
    total: int = 0
    result: PairResult | None = None


def _needs_description(p: Product, mode: str) -> bool:
    return mode == "always" or (mode == "missing" and not p.description.strip())


def _clean_description(text: str) -> str:
    paras = [" ".join(p.split()) for p in strip_artefacts(text).split("\n\n")]
    return "\n\n".join(p for p in paras if p)


def iter_pair(
    a: Product,
    b: Product,
    backend: Backend,
    options: DistillOptions | None = None,
    *,
    images: Mapping[str, Image.Image | None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    calls_per_generate: int = 1,
) -> Iterator[PairEvent]:
    """Run the three stages for one pair, yielding :class:`PairEvent` as each call finishes.

    ``images`` gives images by ASIN (uploads); products not in it get their first reachable ``image_urls``.
    ``should_cancel`` is checked before every backend call; after a cancel the finished work is kept and the
    ``done`` event follows. ``calls_per_generate`` > 1 sends that many requests per ``generate`` call (faster on
    concurrent/batched backends, coarser progress and cancel).
    """
    opts = options or DistillOptions()
    if a.asin == b.asin:
        raise ValueError("a pair needs two different products (A and B have the same ASIN)")
    res = PairResult(a=dataclasses.replace(a), b=dataclasses.replace(b))
    source = source_label(backend)
    step = max(1, int(calls_per_generate))
    fparams = opts.filter_params or opts.params

    def ev(kind: str, **kw) -> PairEvent:
        return PairEvent(kind, done=res.done_calls, total=res.total_calls, **kw)

    def cancelled() -> bool:
        if not res.cancelled and should_cancel is not None and should_cancel():
            res.cancelled = True
        return res.cancelled

    def call(reqs: list[LVLMRequest], params: GenParams) -> list[LVLMResponse]:
        out = backend.generate(reqs, params)
        if len(out) != len(reqs):
            raise BackendError(f"backend {backend.name} returned {len(out)} answers for {len(reqs)} requests")
        res.done_calls += len(reqs)
        return out

    products = [res.a, res.b]
    to_describe = [p for p in products if _needs_description(p, opts.describe)]
    res.total_calls = len(to_describe) + len(opts.relations) * (2 if opts.run_filter else 1)
    yield ev("start")

    res.images, res.image_failures = product_images(products, opts, images)
    for p in products:
        yield ev("image", asin=p.asin, image=res.images.get(p.asin), text=res.image_failures.get(p.asin))
    if opts.require_images and any(res.images.get(p.asin) is None for p in products):
        missing = ", ".join(
            f"{p.asin} ({res.image_failures.get(p.asin, 'images turned off')})"
            for p in products
            if res.images.get(p.asin) is None
        )
        res.fatal_error = f"images required but missing for {missing}"
        yield ev("error", stage="images", text=res.fatal_error)
        yield ev("done", result=res)
        return

    by_rel: dict[str, dict] = {}
    filtered: set[str] = set()
    rels = list(opts.relations)
    try:
        # stage 1: describe
        for i in range(0, len(to_describe), step):
            if cancelled():
                break
            batch = to_describe[i : i + step]
            outs = call([describe_request(p, res.images.get(p.asin)) for p in batch], opts.params)
            for p, out in zip(batch, outs):
                text = "" if out.error else _clean_description(out.text)
                if not text:
                    msg = out.error or "empty description"
                    res.errors.append({"stage": "describe", "asin": p.asin, "error": msg})
                    yield ev("error", stage="describe", asin=p.asin, text=msg)
                    continue
                p.description = text
                res.descriptions[p.asin] = text
                yield ev("describe", asin=p.asin, text=text)

        stacked, image_flags = pair_image(res.images.get(a.asin), res.images.get(b.asin))
        res.stacked = stacked
        base_flags = image_flags + (["text_only"] if getattr(backend, "text_only", False) else [])
        yield ev("stacked", image=stacked)

        # stage 2: one intention per relation
        for i in range(0, len(rels), step):
            if cancelled():
                break
            batch_rels = rels[i : i + step]
            reqs = [intention_request(res.a, res.b, r, stacked) for r in batch_rels]
            outs = call(reqs, opts.params)
            for r, req, out in zip(batch_rels, reqs, outs):
                row, err = _intention_row(res.a, res.b, r, req, out, source, base_flags)
                if err:
                    res.errors.append({"stage": "intention", "relation": r, "error": err})
                    yield ev("error", stage="intention", relation=r, text=err)
                    continue
                by_rel[r] = row
                yield ev("intention", relation=r, row=dict(row))

        # stage 3: role-aware filter
        if opts.run_filter:
            todo = [r for r in rels if r in by_rel]
            for i in range(0, len(todo), step):
                if cancelled():
                    break
                batch_rels = todo[i : i + step]
                reqs = [filter_request(res.a, res.b, r, by_rel[r]["intention"], stacked) for r in batch_rels]
                outs = call(reqs, fparams)
                for r, out in zip(batch_rels, outs):
                    if out.error:
                        res.errors.append({"stage": "filter", "relation": r, "error": out.error})
                        yield ev("error", stage="filter", relation=r, text=out.error)
                        continue
                    _apply_filter(by_rel[r], out)
                    filtered.add(r)
                    yield ev("filter", relation=r, row=dict(by_rel[r]))
    except BackendError as err:
        res.fatal_error = str(err)
        yield ev("error", stage="backend", text=str(err))

    for r in rels:
        if r in by_rel:
            row = by_rel[r]
            if opts.run_filter and r not in filtered:
                _add_flags(row, "not_filtered")
            res.rows.append(row)
    if res.cancelled:
        yield ev("cancelled")
    yield ev("done", result=res)


def run_pair(
    a: Product,
    b: Product,
    backend: Backend,
    options: DistillOptions | None = None,
    *,
    images: Mapping[str, Image.Image | None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    on_event: Callable[[PairEvent], None] | None = None,
    calls_per_generate: int = 1,
) -> PairResult:
    """:func:`iter_pair` driven to the end; ``on_event`` sees every event. Returns the :class:`PairResult`."""
    result: PairResult | None = None
    for event in iter_pair(
        a, b, backend, options, images=images, should_cancel=should_cancel, calls_per_generate=calls_per_generate
    ):
        if on_event is not None:
            on_event(event)
        if event.kind == "done":
            result = event.result
    assert result is not None
    return result


def _intention_row(
    a: Product, b: Product, relation: str, req: LVLMRequest, out: LVLMResponse, source: str, base_flags: Sequence[str]
) -> tuple[dict | None, str | None]:
    if out.error:
        return None, out.error
    if "prefill_applied" in out.meta:  # the backend says whether ``text`` continues the prefill
        full = answer_text(req, out)
    else:
        full = join_prefill(req.prefill or intention_opening(relation), out.text)
    text, flags = parse_intention(full, relation)
    if "empty" in flags:
        return None, "empty intention (the model wrote nothing after the opening)"
    return make_row(a, b, relation, text, source=source, flags=[*flags, *base_flags]), None


def _apply_filter(row: dict, out: LVLMResponse) -> None:
    verdict, reason = parse_filter(out.text)
    row["verdict"], row["reason"] = verdict, reason
    row["p_yes"] = None if out.p_yes is None else float(out.p_yes)
    if verdict is None:
        _add_flags(row, "filter_unparsed")


# --- many pairs ------------------------------------------------------------------------------------------------


@dataclass
class ChunkResult:
    #: complete KB rows (intention + filter)
    rows: list[dict] = field(default_factory=list)
    #: stage-1 descriptions written in this chunk, by ASIN
    descriptions: dict[str, str] = field(default_factory=dict)
    image_failures: dict[str, str] = field(default_factory=dict)
    #: per-call failures: {"stage", "pair_id", "asin_a", "asin_b", "relation" | "asin", "error"}
    errors: list[dict] = field(default_factory=list)
    #: pairs not attempted: {"pair_id", "reason"}
    skipped: list[dict] = field(default_factory=list)
    calls: int = 0


def run_pairs(
    pairs: Sequence[tuple[Product, Product]],
    backend: Backend,
    options: DistillOptions | None = None,
    *,
    done: set[tuple[str, str]] | frozenset = frozenset(),
    on_descriptions: Callable[[dict[str, str]], None] | None = None,
    on_stage: Callable[[str, int], None] | None = None,
) -> ChunkResult:
    """The three stages for many pairs, one ``generate`` call per stage.

    ``done`` holds ``(pair_id, relation)`` keys to skip. ``on_descriptions`` is called right after stage 1 with
    the new descriptions (so they can be persisted before stage 2 starts); ``on_stage(stage, n_requests)`` before
    each stage. Backend-wide failures (:class:`BackendError`) propagate; per-request failures are collected in
    ``errors`` and their rows are left out.
    """
    opts = options or DistillOptions()
    source = source_label(backend)
    fparams = opts.filter_params or opts.params
    res = ChunkResult()
    work: list[tuple[Product, Product, list[str]]] = []
    for a, b in pairs:
        pid = pair_id(a.asin, b.asin)
        rels = [r for r in opts.relations if (pid, r) not in done]
        if rels and a.asin != b.asin:
            work.append((dataclasses.replace(a), dataclasses.replace(b), rels))
    if not work:
        return res

    # one Product object per ASIN, so a description written in stage 1 reaches every pair
    by_asin: dict[str, Product] = {}
    for i, (a, b, rels) in enumerate(work):
        a = by_asin.setdefault(a.asin, a)
        b = by_asin.setdefault(b.asin, b)
        work[i] = (a, b, rels)

    images, failures = product_images(list(by_asin.values()), opts)
    res.image_failures = failures
    if opts.require_images:
        kept = []
        for a, b, rels in work:
            miss = [x.asin for x in (a, b) if images.get(x.asin) is None]
            if miss:
                res.skipped.append(
                    {
                        "pair_id": pair_id(a.asin, b.asin),
                        "reason": "no image for " + ", ".join(f"{m} ({failures.get(m)})" for m in miss),
                    }
                )
            else:
                kept.append((a, b, rels))
        work = kept

    def call(stage: str, reqs: list[LVLMRequest], params: GenParams) -> list[LVLMResponse]:
        if on_stage is not None:
            on_stage(stage, len(reqs))
        out = backend.generate(reqs, params) if reqs else []
        if len(out) != len(reqs):
            raise BackendError(f"backend {backend.name} returned {len(out)} answers for {len(reqs)} requests")
        res.calls += len(reqs)
        return out

    # stage 1
    needed = list(dict.fromkeys(x.asin for a, b, _ in work for x in (a, b) if _needs_description(x, opts.describe)))
    failed_products: set[str] = set()
    if needed:
        outs = call("describe", [describe_request(by_asin[s], images.get(s)) for s in needed], opts.params)
        for s, out in zip(needed, outs):
            text = "" if out.error else _clean_description(out.text)
            if not text:
                failed_products.add(s)
                res.errors.append({"stage": "describe", "asin": s, "error": out.error or "empty description"})
                continue
            by_asin[s].description = text
            res.descriptions[s] = text
        if res.descriptions and on_descriptions is not None:
            on_descriptions(dict(res.descriptions))
    if failed_products:
        kept = []
        for a, b, rels in work:
            bad = [x.asin for x in (a, b) if x.asin in failed_products]
            if bad:
                for r in rels:
                    res.errors.append(
                        {
                            "stage": "describe",
                            "pair_id": pair_id(a.asin, b.asin),
                            "asin_a": a.asin,
                            "asin_b": b.asin,
                            "relation": r,
                            "error": f"stage 1 failed for {', '.join(bad)}",
                        }
                    )
            else:
                kept.append((a, b, rels))
        work = kept

    # stage 2
    stacked: dict[str, tuple[Image.Image | None, list[str]]] = {}
    text_only = ["text_only"] if getattr(backend, "text_only", False) else []
    jobs: list[tuple[Product, Product, str]] = []
    reqs: list[LVLMRequest] = []
    for a, b, rels in work:
        pid = pair_id(a.asin, b.asin)
        if pid not in stacked:
            stacked[pid] = pair_image(images.get(a.asin), images.get(b.asin))
        for r in rels:
            jobs.append((a, b, r))
            reqs.append(intention_request(a, b, r, stacked[pid][0]))
    outs = call("intention", reqs, opts.params)
    made: list[dict] = []
    for (a, b, r), req, out in zip(jobs, reqs, outs):
        pid = pair_id(a.asin, b.asin)
        row, err = _intention_row(a, b, r, req, out, source, stacked[pid][1] + text_only)
        if err:
            res.errors.append(
                {"stage": "intention", "pair_id": pid, "asin_a": a.asin, "asin_b": b.asin, "relation": r, "error": err}
            )
            continue
        made.append(row)

    # stage 3
    if opts.run_filter and made:
        freqs = [
            filter_request(
                by_asin[row["asin_a"]],
                by_asin[row["asin_b"]],
                row["relation"],
                row["intention"],
                stacked[row["pair_id"]][0],
            )
            for row in made
        ]
        outs = call("filter", freqs, fparams)
        for row, out in zip(made, outs):
            if out.error:
                res.errors.append(
                    {
                        "stage": "filter",
                        "pair_id": row["pair_id"],
                        "asin_a": row["asin_a"],
                        "asin_b": row["asin_b"],
                        "relation": row["relation"],
                        "error": out.error,
                    }
                )
                continue
            _apply_filter(row, out)
            res.rows.append(row)
    else:
        res.rows.extend(made)
    return res
