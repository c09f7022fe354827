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
``not_filtered`` (single-pair run stopped before the filter), ``critic_verdict`` (the learned critic decided the
verdict: ``filter_mode`` "critic" or "both"), ``lvlm_disagrees`` (with "both": the LVLM filter answered the other
way; its answer is the row's reason and P(yes)).

Who decides (``DistillOptions.filter_mode``): ``lvlm`` = MIND's rule, the role-aware filter's leading yes / no;
``critic`` = a learned critic's P(keep) >= ``critic_threshold`` (the LVLM filter is not asked, saving one call per
intention); ``both`` = the LVLM filter runs and is recorded, but the critic decides. The critic is a function
``rows -> P(keep)`` handed in by the caller (:func:`mind_core.kb.critic.row_scorer`), so this layer knows nothing
of models; its P(keep) per row is in ``PairResult.critic`` / ``ChunkResult.critic`` and on the ``filter`` events.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from mind_core.distill.stages import (
    DESCRIBE_MODES,
    FILTER_MODES,
    FilterJob,
    ImageOptions,
    IntentionJob,
    apply_critic,
    apply_verdict,
    critic_scores,
    describe,
    intend,
    judge,
    needs_description,
    pair_image,
    product_images,
    row_flags,
)
from mind_core.lvlm.base import Backend, BackendError, GenParams, source_label
from mind_core.schema import RELATIONS, Product, add_flags, pair_id

log = logging.getLogger(__name__)


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
    #: who decides the verdict: "lvlm" (MIND), "critic" or "both" (module docstring)
    filter_mode: str = "lvlm"
    #: rows -> P(keep), needed by "critic" and "both" (:func:`mind_core.kb.critic.row_scorer`)
    critic: Callable[[Sequence[dict]], Sequence[float]] | None = None
    #: keep a row when the critic's P(keep) >= this
    critic_threshold: float = 0.5

    def __post_init__(self) -> None:
        if self.describe not in DESCRIBE_MODES:
            raise ValueError(f"describe must be one of {DESCRIBE_MODES}, got {self.describe!r}")
        if self.filter_mode not in FILTER_MODES:
            raise ValueError(f"filter_mode must be one of {FILTER_MODES}, got {self.filter_mode!r}")
        if self.filter_mode != "lvlm" and self.critic is None:
            raise ValueError(f"filter_mode {self.filter_mode!r} needs a critic")
        if not 0.0 <= float(self.critic_threshold) <= 1.0:
            raise ValueError(f"critic_threshold must be in [0, 1], got {self.critic_threshold}")
        self.relations = list(self.relations)

    @property
    def asks_lvlm_filter(self) -> bool:
        """Stage 3 calls the backend (not with ``filter_mode`` "critic")."""
        return self.run_filter and self.filter_mode != "critic"

    @property
    def uses_critic(self) -> bool:
        return self.run_filter and self.filter_mode != "lvlm"

    @property
    def images(self) -> ImageOptions:
        return ImageOptions(self.use_images, self.image_timeout, self.image_cache_dir, self.image_workers)

    @property
    def judge_params(self) -> GenParams:
        return self.filter_params or self.params


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
    #: the critic's P(keep) by intention_id (filter_mode "critic" / "both")
    critic: dict[str, float] = field(default_factory=dict)
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
    * ``"filter"``: ``relation``, ``row`` (the same row with verdict, reason, p_yes), ``score`` (the critic's
      P(keep) with ``filter_mode`` "critic" / "both", else ``None``)
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
    score: float | None = None
    done: int = 0
    total: int = 0
    result: PairResult | None = None


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

    def ev(kind: str, **kw) -> PairEvent:
        return PairEvent(kind, done=res.done_calls, total=res.total_calls, **kw)

    def cancelled() -> bool:
        if not res.cancelled and should_cancel is not None and should_cancel():
            res.cancelled = True
        return res.cancelled

    def batches(items: list) -> Iterator[list]:
        for i in range(0, len(items), step):
            if cancelled():
                return
            yield items[i : i + step]

    products = [res.a, res.b]
    to_describe = [p for p in products if needs_description(p, opts.describe)]
    res.total_calls = len(to_describe) + len(opts.relations) * (2 if opts.asks_lvlm_filter else 1)
    yield ev("start")

    res.images, res.image_failures = product_images(products, opts.images, images)
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
        for batch in batches(to_describe):  # stage 1
            for d in describe(backend, batch, res.images, opts.params):
                res.done_calls += 1
                if d.text is None:
                    res.errors.append({"stage": "describe", "asin": d.product.asin, "error": d.error})
                    yield ev("error", stage="describe", asin=d.product.asin, text=d.error)
                    continue
                d.product.description = d.text
                res.descriptions[d.product.asin] = d.text
                yield ev("describe", asin=d.product.asin, text=d.text)

        stacked, image_flags = pair_image(res.images.get(a.asin), res.images.get(b.asin))
        res.stacked = stacked
        flags = row_flags(image_flags, backend)
        yield ev("stacked", image=stacked)

        for batch in batches(rels):  # stage 2
            jobs = [IntentionJob(res.a, res.b, r, stacked, flags) for r in batch]
            for r, (row, err) in zip(batch, intend(backend, jobs, opts.params, source)):
                res.done_calls += 1
                if err:
                    res.errors.append({"stage": "intention", "relation": r, "error": err})
                    yield ev("error", stage="intention", relation=r, text=err)
                    continue
                by_rel[r] = row
                yield ev("intention", relation=r, row=dict(row))

        made = [r for r in rels if r in by_rel]
        p_keep: dict[str, float] = {}
        if opts.uses_critic and made:  # no backend call: one critic call for every intention of the pair
            values = critic_scores(opts.critic, [by_rel[r] for r in made])
            p_keep = dict(zip(made, values))
            res.critic.update({by_rel[r]["intention_id"]: p_keep[r] for r in made})
        if opts.asks_lvlm_filter:  # stage 3
            for batch in batches(made):
                jobs = [FilterJob(res.a, res.b, r, by_rel[r]["intention"], stacked) for r in batch]
                for r, (verdict, err) in zip(batch, judge(backend, jobs, opts.judge_params)):
                    res.done_calls += 1
                    if err:
                        res.errors.append({"stage": "filter", "relation": r, "error": err})
                        yield ev("error", stage="filter", relation=r, text=err)
                        continue
                    apply_verdict(by_rel[r], verdict)
                    if r in p_keep:
                        apply_critic(by_rel[r], p_keep[r], opts.critic_threshold, opts.filter_mode)
                    filtered.add(r)
                    yield ev("filter", relation=r, row=dict(by_rel[r]), score=p_keep.get(r))
        elif opts.uses_critic:  # the critic alone decides
            for r in made:
                apply_critic(by_rel[r], p_keep[r], opts.critic_threshold, opts.filter_mode)
                filtered.add(r)
                yield ev("filter", relation=r, row=dict(by_rel[r]), score=p_keep[r])
    except BackendError as err:
        res.fatal_error = str(err)
        yield ev("error", stage="backend", text=str(err))

    for r in rels:
        if r in by_rel:
            row = by_rel[r]
            if opts.run_filter and r not in filtered:
                row["flags"] = add_flags(row["flags"], "not_filtered")
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
    #: the critic's P(keep) by intention_id (filter_mode "critic" / "both")
    critic: dict[str, float] = field(default_factory=dict)
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
        work[i] = (by_asin.setdefault(a.asin, a), by_asin.setdefault(b.asin, b), rels)

    images, failures = product_images(list(by_asin.values()), opts.images)
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

    def stage(name: str, n: int) -> None:
        if on_stage is not None:
            on_stage(name, n)
        res.calls += n

    # stage 1
    needed = [
        by_asin[s]
        for s in dict.fromkeys(x.asin for a, b, _ in work for x in (a, b))
        if needs_description(by_asin[s], opts.describe)
    ]
    failed_products: set[str] = set()
    if needed:
        stage("describe", len(needed))
        for d in describe(backend, needed, images, opts.params):
            if d.text is None:
                failed_products.add(d.product.asin)
                res.errors.append({"stage": "describe", "asin": d.product.asin, "error": d.error})
                continue
            d.product.description = d.text
            res.descriptions[d.product.asin] = d.text
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
    jobs: list[IntentionJob] = []
    for a, b, rels in work:
        pid = pair_id(a.asin, b.asin)
        if pid not in stacked:
            image, image_flags = pair_image(images.get(a.asin), images.get(b.asin))
            stacked[pid] = (image, row_flags(image_flags, backend))
        jobs += [IntentionJob(a, b, r, *stacked[pid]) for r in rels]
    stage("intention", len(jobs))
    made: list[dict] = []
    for job, (row, err) in zip(jobs, intend(backend, jobs, opts.params, source)):
        if err:
            res.errors.append(_pair_error("intention", job.a, job.b, job.relation, err))
            continue
        made.append(row)

    # stage 3 (and / or the critic: no backend call)
    p_keep: list[float] = critic_scores(opts.critic, made) if opts.uses_critic and made else []
    res.critic.update({r["intention_id"]: p for r, p in zip(made, p_keep)})
    if opts.asks_lvlm_filter and made:
        fjobs = [
            FilterJob(
                by_asin[r["asin_a"]], by_asin[r["asin_b"]], r["relation"], r["intention"], stacked[r["pair_id"]][0]
            )
            for r in made
        ]
        stage("filter", len(fjobs))
        for i, (row, job, (verdict, err)) in enumerate(zip(made, fjobs, judge(backend, fjobs, opts.judge_params))):
            if err:
                res.errors.append(_pair_error("filter", job.a, job.b, job.relation, err))
                continue
            apply_verdict(row, verdict)
            if p_keep:
                apply_critic(row, p_keep[i], opts.critic_threshold, opts.filter_mode)
            res.rows.append(row)
    else:
        for row, p in zip(made, p_keep):
            apply_critic(row, p, opts.critic_threshold, opts.filter_mode)
        res.rows.extend(made)
    return res


def _pair_error(stage: str, a: Product, b: Product, relation: str, error: str) -> dict:
    return {
        "stage": stage,
        "pair_id": pair_id(a.asin, b.asin),
        "asin_a": a.asin,
        "asin_b": b.asin,
        "relation": relation,
        "error": error,
    }
