"""MIND's three stages, each written once: describe (stage 1), intend (stage 2), role-aware filter (stage 3).

Every stage takes a batch of work items, sends them to the backend in ONE ``generate`` call (so the transformers
backend can batch and the OpenAI backend can run the requests concurrently) and turns the answers into results.
:func:`~mind_core.distill.pipeline.iter_pair` (one pair, with events), :func:`~mind_core.distill.pipeline.run_pairs`
(a chunk of many pairs) and :func:`~mind_core.distill.rescore.run_rescore` (the filter asked again for KB rows)
are all built from these functions; none of them builds a prompt or parses an answer itself.

Pair images: :func:`product_images` fetches each product's first image, :func:`pair_image` stacks two of them
(MIND's layout: A above B on black, 20 px gap) and says which flags that implies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from mind_core import images as img
from mind_core.distill.parsing import join_prefill, parse_filter, parse_intention, strip_artefacts
from mind_core.distill.prompts import describe_request, filter_request, intention_opening, intention_request
from mind_core.lvlm.base import Backend, BackendError, GenParams, LVLMRequest, LVLMResponse, answer_text
from mind_core.schema import INTENTION_COLUMNS, Product, add_flags, flags_text, intention_id, now_utc, pair_id

DESCRIBE_MODES = ("missing", "always", "never")
#: who decides a row's verdict (mind_core.distill.pipeline): the LVLM filter, a learned critic, or the critic while
#: the LVLM filter's answer is recorded
FILTER_MODES = ("lvlm", "critic", "both")


# --- the backend call ------------------------------------------------------------------------------------------


def call_backend(backend: Backend, requests: Sequence[LVLMRequest], params: GenParams) -> list[LVLMResponse]:
    """One ``generate`` call; a backend that answers a different number of requests is a :class:`BackendError`."""
    if not requests:
        return []
    out = backend.generate(list(requests), params)
    if len(out) != len(requests):
        raise BackendError(f"backend {backend.name} returned {len(out)} answers for {len(requests)} requests")
    return out


# --- images ----------------------------------------------------------------------------------------------------


@dataclass
class ImageOptions:
    #: fetch product images (``False``: text only, no network)
    use_images: bool = True
    timeout: float = 2.0
    cache_dir: str | Path | None = None
    #: threads used to fetch the images of a batch
    workers: int = 8


def product_images(
    products: Sequence[Product],
    options: ImageOptions,
    provided: Mapping[str, Image.Image | None] | None = None,
) -> tuple[dict[str, Image.Image | None], dict[str, str]]:
    """First image of each product (``provided`` wins over fetching ``image_urls``). Returns
    ``(images, failures)`` where ``failures[asin]`` says why a product has no image."""
    out: dict[str, Image.Image | None] = {}
    failures: dict[str, str] = {}
    todo: list[Product] = []
    for p in {p.asin: p for p in products}.values():
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
            return img.fetch_first_image(p.image_urls, timeout=options.timeout, cache_dir=options.cache_dir)

        workers = max(1, min(options.workers, len(todo)))
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


def row_flags(image_flags: Sequence[str], backend: Backend) -> list[str]:
    """Flags every row of a pair carries: the image flags, plus ``text_only`` for a backend that cannot see."""
    flags = list(image_flags)
    if getattr(backend, "text_only", False) and "text_only" not in flags:
        flags.append("text_only")
    return flags


# --- stage 1: describe -----------------------------------------------------------------------------------------


def needs_description(p: Product, mode: str) -> bool:
    return mode == "always" or (mode == "missing" and not p.description.strip())


def clean_description(text: str) -> str:
    paras = [" ".join(p.split()) for p in strip_artefacts(text).split("\n\n")]
    return "\n\n".join(p for p in paras if p)


@dataclass
class Description:
    product: Product
    text: str | None  # the stage-1 description, or None when it failed
    error: str | None = None


def describe(
    backend: Backend, products: Sequence[Product], images: Mapping[str, Image.Image | None], params: GenParams
) -> list[Description]:
    """Stage 1 for ``products`` (one call), in order. The products are not changed."""
    outs = call_backend(backend, [describe_request(p, images.get(p.asin)) for p in products], params)
    results = []
    for p, out in zip(products, outs):
        text = "" if out.error else clean_description(out.text)
        results.append(Description(p, text or None, None if text else (out.error or "empty description")))
    return results


# --- stage 2: intend -------------------------------------------------------------------------------------------


@dataclass
class IntentionJob:
    a: Product
    b: Product
    relation: str
    stacked: Image.Image | None
    flags: list[str] = field(default_factory=list)


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
    """One KB intentions row (all of :data:`~mind_core.schema.INTENTION_COLUMNS`)."""
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


def intention_row(
    job: IntentionJob, req: LVLMRequest, out: LVLMResponse, source: str
) -> tuple[dict | None, str | None]:
    """``(row, None)`` from one stage-2 answer, or ``(None, error)``."""
    if out.error:
        return None, out.error
    if "prefill_applied" in out.meta:  # the backend says whether ``text`` continues the prefill
        full = answer_text(req, out)
    else:
        full = join_prefill(req.prefill or intention_opening(job.relation), out.text)
    text, flags = parse_intention(full, job.relation)
    if "empty" in flags:
        return None, "empty intention (the model wrote nothing after the opening)"
    return make_row(job.a, job.b, job.relation, text, source=source, flags=[*flags, *job.flags]), None


def intend(
    backend: Backend, jobs: Sequence[IntentionJob], params: GenParams, source: str
) -> list[tuple[dict | None, str | None]]:
    """Stage 2 for ``jobs`` (one call): ``(row, error)`` per job, in order; the rows' verdicts are still None."""
    reqs = [intention_request(j.a, j.b, j.relation, j.stacked) for j in jobs]
    outs = call_backend(backend, reqs, params)
    return [intention_row(j, req, out, source) for j, req, out in zip(jobs, reqs, outs)]


# --- stage 3: the role-aware filter ----------------------------------------------------------------------------


@dataclass
class FilterJob:
    a: Product
    b: Product
    relation: str
    intention: str
    stacked: Image.Image | None


@dataclass
class Verdict:
    """What the filter answered for one intention."""

    verdict: str | None  # "yes" / "no" / None (began with neither)
    reason: str
    p_yes: float | None
    flags: list[str] = field(default_factory=list)  # ["filter_unparsed"] when verdict is None


def read_verdict(out: LVLMResponse) -> Verdict:
    verdict, reason = parse_filter(out.text)
    return Verdict(
        verdict,
        reason,
        None if out.p_yes is None else float(out.p_yes),
        [] if verdict is not None else ["filter_unparsed"],
    )


def judge(backend: Backend, jobs: Sequence[FilterJob], params: GenParams) -> list[tuple[Verdict | None, str | None]]:
    """Stage 3 for ``jobs`` (one call): ``(verdict, None)`` or ``(None, error)`` per job, in order."""
    reqs = [filter_request(j.a, j.b, j.relation, j.intention, j.stacked) for j in jobs]
    outs = call_backend(backend, reqs, params)
    return [(None, out.error) if out.error else (read_verdict(out), None) for out in outs]


def critic_scores(critic, rows: Sequence[dict]) -> list[float]:
    """The critic's P(keep) for ``rows`` (one call). A critic that fails or answers wrongly is a
    :class:`BackendError` (the run stops with the message, like a backend that fails as a whole)."""
    try:
        values = [float(v) for v in critic(list(rows))]
    except BackendError:
        raise
    except Exception as err:  # the critic is the caller's function: say what broke, stop the run
        raise BackendError(f"the critic failed: {type(err).__name__}: {err}") from err
    if len(values) != len(rows) or any(not 0.0 <= v <= 1.0 for v in values):
        raise BackendError(f"the critic returned {len(values)} values for {len(rows)} rows, or values outside [0, 1]")
    return values


def apply_critic(row: dict, p_keep: float, threshold: float, mode: str) -> None:
    """The critic decides the row's verdict (``p_keep >= threshold``). ``mode`` "critic": the LVLM filter was not
    asked, the reason says what decided; "both": the LVLM's answer stays the reason and P(yes), and
    ``lvlm_disagrees`` marks a row where it answered the other way."""
    keep = p_keep >= threshold
    lvlm = row.get("verdict")
    row["verdict"] = "yes" if keep else "no"
    flags = ["critic_verdict"]
    if mode == "critic":
        row["reason"] = (
            f"critic P(keep) {p_keep:.2f} {'>=' if keep else '<'} {threshold:.2f}: "
            f"{'kept' if keep else 'dropped'} (the LVLM filter was not asked)"
        )
        row["p_yes"] = None
    elif lvlm is not None and lvlm != row["verdict"]:
        flags.append("lvlm_disagrees")
    row["flags"] = add_flags(row["flags"], *flags)


def apply_verdict(row: dict, v: Verdict) -> None:
    """Write the filter's answer into a KB row."""
    row["verdict"], row["reason"], row["p_yes"] = v.verdict, v.reason, v.p_yes
    if v.flags:
        row["flags"] = add_flags(row["flags"], *v.flags)
