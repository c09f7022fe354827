"""Try a product: everything behind the live page (``views/try_product.py``) except the widgets.

* Inputs — :func:`read_upload` turns an uploaded file into an RGB image or a user-facing error (and says when a
  CMYK / palette / transparent / animated / 16-bit image was normalised); :func:`uploaded_product` and
  :func:`kb_product` make the two :class:`~mind_core.schema.Product` s; :func:`check_pair` refuses A == B.
* Backend — :class:`BackendConfig` (from the sidebar, preconfigured by environment variables, see
  :data:`ENV_VARS`) and :func:`open_backend` (local models are loaded once per process and reused; an OpenAI
  client is made per run, because its API key belongs to one browser session).
* Run — :class:`LiveRun` runs :func:`~mind_core.distill.pipeline.iter_pair` in a background thread that outlives
  Streamlit reruns; the page polls :meth:`LiveRun.view` (a :class:`RunView`: one entry per stage, the descriptions,
  the stacked image, intentions and verdicts as they finish, errors, done / total calls). :meth:`LiveRun.stop`
  sets a cancel event the pipeline checks before every backend call, so finished work is kept.
* Results — :func:`results_table`, :func:`similar_in_kb` (FAISS top-k per new intention), :func:`save_run` (merge
  the rows into Parquet under ``paths.user_kb_dir()`` and build a KB folder there that the sidebar lists) and
  :func:`export_rows`.

The API key lives only in the ``BackendConfig`` the page keeps in ``st.session_state``: it is excluded from
``repr`` and from every cache key, and never written anywhere.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from PIL import Image

from mind_core import images as img
from mind_core.distill.pipeline import DistillOptions, PairEvent, PairResult, iter_pair
from mind_core.lvlm import make_backend
from mind_core.lvlm.base import Backend, BackendError, GenParams
from mind_core.schema import INTENTION_COLUMNS, PRODUCT_COLUMNS, RELATIONS, Product

log = logging.getLogger(__name__)

#: upload formats offered by the page (``open_image`` reads more; the uploader only offers these)
UPLOAD_TYPES: tuple[str, ...] = ("png", "jpg", "jpeg", "webp")
MAX_UPLOADS = 4
#: relations preselected on the page: three for real LVLM backends; one for the offline fallback, whose calls take
#: tens of seconds each on a 2-core CPU (measured timings: README, "Try a product")
DEFAULT_RELATIONS: tuple[str, ...] = ("usedFor", "capableOf", "isA")
DEFAULT_RELATIONS_OFFLINE: tuple[str, ...] = ("usedFor",)
UPLOAD_CATEGORY = "uploaded"
USER_KB_NAME = "my-products"
#: Parquet parts the user KB is built from, under ``user_kb_dir()`` (the leading underscore keeps the folder out
#: of the sidebar's KB list)
USER_DATA_SUBDIR = "_distilled"

#: environment variables that preconfigure the backend picker (documented in README, "Try a product")
ENV_VARS: dict[str, str] = {
    "MIND_BACKEND": "default backend: offline, transformers or openai",
    "MIND_TRANSFORMERS_MODEL": "model folder or Hugging Face id for the transformers backend",
    "MIND_OPENAI_ENDPOINT": "OpenAI-compatible server URL, e.g. http://localhost:8000/v1 (also MIND_ENDPOINT)",
    "MIND_OPENAI_MODEL": "model name on that server (empty: the server's first model)",
    "MIND_OPENAI_TIMEOUT": "seconds to wait for one answer before it counts as timed out (default 60)",
    "MIND_MAX_NEW_TOKENS": "cap on generated tokens per answer (default 512, as MIND)",
    "OPENAI_API_KEY": "API key used when the page's key field is left empty",
}
DEFAULT_OPENAI_TIMEOUT = 60.0
#: retries per request in the page (the CLI's 4 would keep a user waiting minutes on a dead server)
LIVE_MAX_RETRIES = 1


# --- uploads ---------------------------------------------------------------------------------------------------


@dataclass
class Upload:
    """One uploaded file: ``image`` (RGB) or ``error`` (a message for the user); ``note`` says what was
    normalised."""

    name: str
    image: Image.Image | None = None
    error: str | None = None
    note: str | None = None
    digest: str = ""

    @property
    def ok(self) -> bool:
        return self.image is not None


def _normalisation_note(data: bytes) -> str | None:
    """What ``open_image`` will change about this file, read from its header (no pixels decoded)."""
    try:
        with Image.open(io.BytesIO(data), formats=img.ALLOWED_FORMATS) as im:
            mode, frames = im.mode, getattr(im, "n_frames", 1)
            transparent = "transparency" in im.info or mode in ("RGBA", "LA", "PA")
            orientation = im.getexif().get(0x0112, 1) if hasattr(im, "getexif") else 1
    except Exception:  # the real open reports the problem
        return None
    notes = []
    if mode == "CMYK":
        notes.append("CMYK colours converted to RGB")
    elif mode == "P":
        notes.append("palette image converted to RGB")
    elif mode.startswith("I;16") or mode in ("I", "F"):
        notes.append("16-bit image reduced to 8-bit RGB")
    elif mode in ("L", "1", "LA"):
        notes.append("greyscale image converted to RGB")
    if transparent:
        notes.append("transparent areas put on white")
    if frames and frames > 1:
        notes.append(f"animated ({frames} frames): the first frame is used")
    if orientation not in (None, 1):
        notes.append("rotated as its EXIF orientation says")
    return "; ".join(notes) or None


_upload_cache: dict[str, Upload] = {}
_upload_lock = threading.Lock()
_UPLOAD_CACHE_MAX = 32


def read_upload(
    name: str, data: bytes, *, max_bytes: int = img.MAX_IMAGE_BYTES, max_pixels: int = img.MAX_IMAGE_PIXELS
) -> Upload:
    """Validate and decode one uploaded file (cached by content hash, so reruns do not decode again)."""
    digest = hashlib.sha1(data).hexdigest()
    key = f"{digest}:{max_bytes}:{max_pixels}"
    with _upload_lock:
        hit = _upload_cache.get(key)
    if hit is not None:
        return dataclasses.replace(hit, name=name)
    try:
        image = img.open_image(data, max_bytes=max_bytes, max_pixels=max_pixels)
    except img.ImageError as err:
        up = Upload(name, error=str(err), digest=digest)
    else:
        up = Upload(name, image=image, note=_normalisation_note(data), digest=digest)
    with _upload_lock:
        if len(_upload_cache) >= _UPLOAD_CACHE_MAX:
            _upload_cache.pop(next(iter(_upload_cache)))
        _upload_cache[key] = up
    return up


def upload_asin(title: str, uploads: Sequence[Upload]) -> str:
    """A stable 10-character id for an uploaded product: ``U`` + hash of the normalised title and image bytes, so
    the same upload twice is the same product (and re-saving replaces rather than duplicates)."""
    key = " ".join(title.lower().split()) + "|" + ",".join(u.digest for u in uploads if u.ok)
    return "U" + hashlib.sha1(key.encode("utf-8")).hexdigest()[:9].upper()


@dataclass
class ProductInput:
    """A product ready to run: the record, the image the model sees (or None) and messages for the user."""

    product: Product | None
    image: Image.Image | None = None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def uploaded_product(
    slot: str, title: str, description: str, uploads: Sequence[Upload], *, main: int = 0, category: str = ""
) -> ProductInput:
    """Product ``slot`` ("A"/"B") from the upload form. Needs a title and at least one usable image; unusable
    files are skipped (each :class:`Upload` carries its own message) and files beyond :data:`MAX_UPLOADS` with a
    warning. ``main`` picks the image the model sees
    (MIND gives the model one image per product)."""
    errors: list[str] = []
    warnings: list[str] = []
    title = " ".join((title or "").split())
    if not title:
        errors.append(f"Product {slot} needs a title.")
    if len(uploads) > MAX_UPLOADS:
        warnings.append(f"Product {slot}: {len(uploads)} images uploaded; only the first {MAX_UPLOADS} are used.")
        uploads = list(uploads)[:MAX_UPLOADS]
    good = [u for u in uploads if u.ok]
    if not uploads:
        errors.append(f"Product {slot} needs at least one image (PNG, JPEG or WebP), or pick it from the KB.")
    elif not good:
        errors.append(f"Product {slot} has no usable image: fix or replace the file(s) above.")
    if errors:
        return ProductInput(None, errors=errors, warnings=warnings)
    chosen = good[main] if 0 <= main < len(good) else good[0]
    product = Product(
        asin=upload_asin(title, good),
        title=title,
        description=(description or "").strip(),
        image_urls=[],
        category=(category or "").strip() or UPLOAD_CATEGORY,
    )
    return ProductInput(product, image=chosen.image, warnings=warnings)


def kb_product(kb, asin: str | None, slot: str) -> ProductInput:
    """Product ``slot`` picked from the loaded KB (its image is fetched from its URLs during the run)."""
    if not asin:
        return ProductInput(
            None,
            errors=[
                f"Pick product {slot} from the knowledge base (type a few words of its title), or switch to Upload."
            ],
        )
    rec = kb.product(asin) if kb is not None else None
    if rec is None:
        return ProductInput(
            None, errors=[f"Product {asin} is not in the loaded knowledge base any more; pick another one."]
        )
    product = Product(
        asin=str(rec["asin"]),
        title=str(rec["title"] or ""),
        description=str(rec["description"] or ""),
        image_urls=[str(u) for u in (rec["image_urls"] or [])],
        category=str(rec["category"] or ""),
    )
    return ProductInput(product)


def check_pair(a: ProductInput, b: ProductInput) -> list[str]:
    """Every problem that stops a run, as messages (empty: ready)."""
    problems = [*a.errors, *b.errors]
    if a.product is not None and b.product is not None and a.product.asin == b.product.asin:
        what = (
            "the same upload (same title and images)"
            if a.product.asin.startswith("U")
            else f"the same KB product ({a.product.asin})"
        )
        problems.append(f"Product A and product B are {what}. MIND needs two different products: change one.")
    return problems


def product_choices(kb, query: str = "", limit: int = 20_000) -> dict[str, str]:
    """``{label: asin}`` for the KB picker: every product when the KB has at most ``limit`` (the selectbox filters
    as you type), else the products whose title contains every word of ``query`` (first 50)."""
    from dashboard.presenters.text import clean_title
    from mind_core.query.search import find_products

    prods = kb.products
    if len(prods) > limit:
        prods = find_products(kb, query, limit=50)
    return {f"{clean_title(t)[:110]} · {a}": str(a) for a, t in zip(prods["asin"], prods["title"])}


def default_relations(kind: str) -> list[str]:
    """The relations the page preselects for a backend kind."""
    return list(DEFAULT_RELATIONS_OFFLINE if kind == "offline" else DEFAULT_RELATIONS)


# --- backend ---------------------------------------------------------------------------------------------------


@dataclass
class BackendConfig:
    """What the sidebar chose. ``api_key`` is never shown, logged or used in a cache key."""

    kind: str = "offline"
    model: str = ""
    endpoint: str = ""
    api_key: str = field(default="", repr=False)
    timeout_s: float = DEFAULT_OPENAI_TIMEOUT
    #: cap on generated tokens per answer (MIND: 512; the offline fallback caps itself lower)
    max_new_tokens: int = 512

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> BackendConfig:
        env = os.environ if environ is None else environ
        kind = (env.get("MIND_BACKEND") or "offline").strip().lower()
        if kind not in ("offline", "transformers", "openai"):
            kind = "offline"
        try:
            timeout = float(env.get("MIND_OPENAI_TIMEOUT") or DEFAULT_OPENAI_TIMEOUT)
        except ValueError:
            timeout = DEFAULT_OPENAI_TIMEOUT
        model = env.get("MIND_OPENAI_MODEL", "") if kind == "openai" else env.get("MIND_TRANSFORMERS_MODEL", "")
        try:
            max_new = max(1, int(env.get("MIND_MAX_NEW_TOKENS") or 512))
        except ValueError:
            max_new = 512
        return cls(
            kind=kind,
            model=model.strip(),
            max_new_tokens=max_new,
            endpoint=(env.get("MIND_OPENAI_ENDPOINT") or env.get("MIND_ENDPOINT") or "").strip(),
            timeout_s=timeout if timeout > 0 else DEFAULT_OPENAI_TIMEOUT,
        )

    @property
    def text_only(self) -> bool:
        return self.kind == "offline"

    def problems(self) -> list[str]:
        """Settings that cannot work, found without loading anything."""
        if self.kind == "transformers" and not self.model.strip():
            return [
                "The transformers backend needs a model: a local model folder (with config.json) or a "
                "Hugging Face id such as llava-hf/llava-1.5-7b-hf."
            ]
        if self.kind == "openai":
            if not self.endpoint.strip():
                return ["The OpenAI-compatible backend needs the server URL, e.g. http://localhost:8000/v1."]
            if not re.match(r"^https?://[^/\s]+", self.endpoint.strip()):
                return [f"{self.endpoint.strip()!r} is not an http(s) URL; expected e.g. http://localhost:8000/v1."]
        return []

    def label(self) -> str:
        """What will run, in words."""
        if self.kind == "offline":
            from mind_core.lvlm.offline.backend import default_gguf_path, model_label

            try:
                name = model_label(default_gguf_path())
            except Exception:
                name = "SmolLM2-135M-Instruct"
            return (
                f"offline · {name} — text-only fallback: the model cannot see the images (OCR text and colours "
                "are given to it instead)"
            )
        if self.kind == "transformers":
            return f"transformers · {self.model.strip() or '(no model chosen)'} — a local vision-language model"
        model = self.model.strip() or "the server's first model"
        return f"openai · {model} at {self.endpoint.strip() or '(no URL)'} — an OpenAI-compatible server"


_local_backends: dict[tuple, Backend] = {}
_local_lock = threading.Lock()


def open_backend(config: BackendConfig) -> tuple[Backend, bool]:
    """``(backend, owned)``: build the configured backend. Offline and transformers models are loaded once per
    process and shared (``owned`` False: do not close them); an OpenAI client is made for this run (``owned``
    True). Raises :class:`BackendError` with what to do."""
    problems = config.problems()
    if problems:
        raise BackendError(problems[0])
    if config.kind == "openai":
        return make_backend(
            "openai",
            endpoint=config.endpoint.strip(),
            model=config.model.strip() or None,
            api_key=config.api_key or None,
            read_timeout=float(config.timeout_s),
            connect_timeout=min(5.0, float(config.timeout_s)),
            max_retries=LIVE_MAX_RETRIES,
            backoff_max=2.0,
            retry_after_max=10.0,
        ), True
    key = (config.kind, config.model.strip())
    with _local_lock:  # one load at a time; a second session waits for the first and reuses it
        backend = _local_backends.get(key)
        if backend is None:
            if config.kind == "transformers":
                backend = make_backend("transformers", model=config.model.strip())
            else:
                backend = make_backend("offline")
            _local_backends[key] = backend
    return backend, False


# --- the run ---------------------------------------------------------------------------------------------------

STAGES: tuple[tuple[str, str], ...] = (
    ("describe", "Stage 1 · describe each product"),
    ("intention", "Stage 2 · one intention per relation"),
    ("filter", "Stage 3 · role-aware filter"),
)


@dataclass
class StageView:
    key: str
    title: str
    #: "waiting", "running", "complete", "skipped", "error", "stopped"
    state: str = "waiting"
    planned: int = 0
    finished: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class RunView:
    """A snapshot of a :class:`LiveRun` for rendering (built from its events; nothing here changes later)."""

    phase: str  # "loading", "running", "finished"
    stages: list[StageView]
    done: int = 0
    total: int = 0
    elapsed_s: float = 0.0
    backend_label: str = ""
    source: str = ""
    images: dict[str, Image.Image | None] = field(default_factory=dict)
    image_notes: dict[str, str] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)
    stacked: Image.Image | None = None
    stacked_ready: bool = False
    #: relation -> latest row (intention, then with the verdict)
    rows: dict[str, dict] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    fatal: str | None = None
    cancel_requested: bool = False
    cancelled: bool = False
    result: PairResult | None = None

    @property
    def finished(self) -> bool:
        return self.phase == "finished"


class LiveRun:
    """One pair through the three MIND stages in a background thread.

    The page keeps the object in ``st.session_state``; reruns (a click anywhere, the Stop button) only read
    :meth:`view`. The thread never touches Streamlit. ``backend_factory`` builds the backend (default
    :func:`open_backend`, which the page always uses).
    """

    def __init__(
        self,
        a: Product,
        b: Product,
        images: Mapping[str, Image.Image | None],
        config: BackendConfig,
        relations: Sequence[str],
        *,
        run_filter: bool = True,
        image_notes: Mapping[str, str] | None = None,
        calls_per_generate: int | None = None,
        backend_factory: Callable[[BackendConfig], tuple[Backend, bool]] = open_backend,
    ):
        if not relations:
            raise ValueError("choose at least one relation")
        unknown = [r for r in relations if r not in RELATIONS]
        if unknown:
            raise ValueError(f"unknown relation(s): {', '.join(unknown)}")
        self.a, self.b = a, b
        self.images = dict(images)
        self.image_notes = dict(image_notes or {})
        self.config = config
        self.relations = list(relations)
        self.options = DistillOptions(
            relations=self.relations, run_filter=run_filter, params=GenParams(max_new_tokens=int(config.max_new_tokens))
        )
        self._factory = backend_factory
        #: requests per backend call; None: all relations of a stage at once on an OpenAI server (they run
        #: concurrently; Stop then acts between stages), one at a time on local models (Stop acts between calls)
        self.calls_per_generate = calls_per_generate
        self.cancel_event = threading.Event()
        self.events: list[PairEvent] = []
        self.fatal: str | None = None
        self.backend_label = config.label()
        self.source = ""
        self.phase = "loading"
        self.started_at = time.monotonic()
        self.finished_at: float | None = None
        self.result: PairResult | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, name="mind-live-run", daemon=True)

    # -- control
    def start(self) -> LiveRun:
        self.started_at = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the run to stop before its next backend call; what finished is kept."""
        self.cancel_event.set()

    @property
    def running(self) -> bool:
        return self.phase != "finished"

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run finished (tests, CLI); True when it did."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- the thread
    def _work(self) -> None:
        backend, owned = None, False
        try:
            try:
                backend, owned = self._factory(self.config)
            except BackendError as err:
                self.fatal = str(err)
                return
            self.backend_label = f"{backend.name} · {backend.model}" + (
                " — text-only fallback" if getattr(backend, "text_only", False) else ""
            )
            from mind_core.lvlm.base import source_label

            self.source = source_label(backend)
            self.phase = "running"
            step = self.calls_per_generate or (len(self.relations) if backend.name == "openai" else 1)
            for event in iter_pair(
                self.a,
                self.b,
                backend,
                self.options,
                images=self.images,
                should_cancel=self.cancel_event.is_set,
                calls_per_generate=step,
            ):
                with self._lock:
                    self.events.append(event)
                if event.kind == "done":
                    self.result = event.result
                    if event.result is not None and event.result.fatal_error:
                        self.fatal = event.result.fatal_error
        except Exception as err:
            log.exception("live run failed")
            self.fatal = f"The run stopped with an unexpected error: {type(err).__name__}: {err}"
        finally:
            if owned and backend is not None:
                with contextlib.suppress(Exception):
                    backend.close()
            self.finished_at = time.monotonic()
            self.phase = "finished"

    # -- what the page shows
    def view(self) -> RunView:
        with self._lock:
            events = list(self.events)
        phase = self.phase  # read once: the thread may finish while we build the view
        end = self.finished_at if phase == "finished" and self.finished_at else time.monotonic()
        v = RunView(
            phase=phase,
            stages=[StageView(k, t) for k, t in STAGES],
            elapsed_s=end - self.started_at,
            backend_label=self.backend_label,
            source=self.source,
            image_notes=dict(self.image_notes),
            cancel_requested=self.cancel_event.is_set(),
            fatal=self.fatal,
            result=self.result,
        )
        st = {s.key: s for s in v.stages}
        n_desc = sum(1 for p in (self.a, self.b) if not p.description.strip())
        st["describe"].planned = n_desc
        st["intention"].planned = len(self.relations)
        for e in events:
            v.done, v.total = e.done, e.total
            if e.kind == "image":
                v.images[e.asin] = e.image
                if e.image is None and e.text:
                    v.image_notes[e.asin] = f"no image: {e.text}"
            elif e.kind == "describe":
                v.descriptions[e.asin] = e.text or ""
                st["describe"].finished += 1
            elif e.kind == "stacked":
                v.stacked, v.stacked_ready = e.image, True
            elif e.kind in ("intention", "filter"):
                v.rows[e.relation] = e.row
                st[e.kind].finished += 1
            elif e.kind == "error":
                where = e.asin or e.relation
                msg = f"{e.stage}{f' ({where})' if where else ''}: {e.text}"
                v.errors.append(msg)
                if e.stage in st:
                    st[e.stage].errors.append(f"{where}: {e.text}" if where else str(e.text))
                    st[e.stage].finished += 1
            elif e.kind == "cancelled":
                v.cancelled = True
        if self.result is not None:  # final rows carry the flags added at the end (e.g. not_filtered)
            v.rows = {r["relation"]: r for r in self.result.rows}
        _stage_states(v, st, self.options.run_filter)
        return v


def _stage_states(v: RunView, st: dict[str, StageView], run_filter: bool) -> None:
    """Each stage's state from what happened so far (the pipeline runs the stages in order)."""
    if v.phase == "loading":
        return

    def settle(s: StageView, complete: bool) -> None:
        if complete:  # every planned call answered; "error" when all of them failed
            s.state = "error" if s.errors and len(s.errors) >= s.finished else "complete"
        elif v.finished:  # the run ended inside this stage: Stop or a backend-wide failure
            s.state = "stopped"
        else:
            s.state = "running"

    d, i, f = st["describe"], st["intention"], st["filter"]
    if d.planned == 0:
        d.state = "skipped"
    else:
        settle(d, d.finished >= d.planned and v.stacked_ready)
    if d.state not in ("complete", "error", "skipped") or not v.stacked_ready:
        return
    settle(i, i.finished >= i.planned)
    if i.state not in ("complete", "error"):
        return
    f.planned = i.finished - len(i.errors)  # one filter call per intention made
    if not run_filter or f.planned == 0:
        f.state = "skipped"
        return
    settle(f, f.finished >= f.planned)


# --- results ---------------------------------------------------------------------------------------------------

RESULT_TABLE_COLUMNS = ["relation", "verdict", "p_yes", "intention", "reason", "flags"]

#: what a row flag means, for the cards
FLAG_TEXT: dict[str, str] = {
    "no_phrase": "the model did not begin with the requested opening",
    "over_length": "longer than MIND's 120 words",
    "text_only": "text-only fallback: the model did not see the images",
    "one_image": "only one product had an image",
    "filter_unparsed": "the filter answer began with neither yes nor no",
    "not_filtered": "the filter did not run (stopped or failed)",
}


def flag_notes(flags: str | None) -> list[str]:
    return [FLAG_TEXT.get(f, f) for f in (flags or "").split(",") if f]


def result_rows(view: RunView) -> list[dict]:
    """The run's KB rows in relation order (final rows once the run finished)."""
    return [r for r in view.rows.values() if r is not None]


def results_table(rows: Sequence[dict]) -> pd.DataFrame:
    """Rows as the page's table: relation, kept / filtered / unjudged, P(yes), intention, reason, flags."""
    from dashboard.presenters.text import verdict_text

    return pd.DataFrame(
        {
            "relation": [r["relation"] for r in rows],
            "verdict": [verdict_text(r.get("verdict")) for r in rows],
            "p_yes": [r.get("p_yes") for r in rows],
            "intention": [r["intention"] for r in rows],
            "reason": [r.get("reason") or "" for r in rows],
            "flags": [r.get("flags") or "" for r in rows],
        },
        columns=RESULT_TABLE_COLUMNS,
    )


def similar_in_kb(kb, rows: Sequence[dict], k: int = 3) -> dict[str, pd.DataFrame]:
    """For each new row, the ``k`` nearest KB intentions (cosine of MiniLM embeddings, FAISS), with both titles:
    ``{intention_id: frame(score, relation, verdict, intention, title_a, title_b)}``. A row already in the KB (a
    saved run) is not its own neighbour."""
    rows = [r for r in rows if (r.get("intention") or "").strip()]
    if kb is None or not rows:
        return {}
    hits = kb.search_batch([r["intention"] for r in rows], k=k + 1)
    out = {}
    for r, h in zip(rows, hits):
        h = h[h["intention_id"].astype(str) != r["intention_id"]].head(k)
        h = kb.with_titles(h)
        out[r["intention_id"]] = h[["score", "relation", "verdict", "intention", "title_a", "title_b"]].reset_index(
            drop=True
        )
    return out


def export_rows(rows: Sequence[dict], fmt: str, products: Sequence[Product] = ()) -> bytes:
    """The run's rows (KB columns + both titles) as CSV / JSONL / Parquet bytes."""
    from mind_core.kb.store import export_frame

    df = pd.DataFrame([{c: r.get(c) for c in INTENTION_COLUMNS} for r in rows], columns=list(INTENTION_COLUMNS))
    titles = {p.asin: p.title for p in products}
    df["title_a"] = df["asin_a"].map(titles)
    df["title_b"] = df["asin_b"].map(titles)
    return export_frame(df, fmt)


@dataclass
class SaveReport:
    kb_dir: Path
    added: int
    replaced: int
    total: int
    seconds: float

    def text(self) -> str:
        what = f"{self.added} new" + (f", {self.replaced} replaced" if self.replaced else "")
        return (
            f"Saved ({what}) into the user KB `{self.kb_dir}` — {self.total} intentions in it now. Pick it in "
            "the sidebar's KB list to browse and search them."
        )


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def user_data_dir(root: str | Path | None = None) -> Path:
    from mind_core.config import user_kb_dir

    return Path(root) if root is not None else user_kb_dir()


def user_kb_path(root: str | Path | None = None, name: str = USER_KB_NAME) -> Path:
    """The KB folder :func:`save_run` builds (listed by the sidebar: ``user_kb_dir()/<name>/manifest.json``)."""
    return user_data_dir(root) / name


def save_run(
    rows: Sequence[dict], products: Sequence[Product], *, root: str | Path | None = None, name: str = USER_KB_NAME
) -> SaveReport:
    """Merge ``rows`` (KB intention rows, ``source = distilled:...``) and their products into the user's Parquet
    tables under ``<root>/_distilled/`` (distill layout: ``intentions/part-*.parquet``, ``products/part-*.parquet``;
    a row with the same ``intention_id`` — same pair, relation and backend — is replaced) and (re)build the KB
    folder ``<root>/<name>`` from them, embeddings and FAISS index included. Serialised by a file lock, so two
    browser sessions saving at once both land."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mind_core.distill.batch import INTENTION_SCHEMA, PRODUCT_SCHEMA, write_table_atomic
    from mind_core.kb.store import build_kb

    rows = [r for r in rows if (r.get("intention") or "").strip()]
    if not rows:
        raise ValueError("nothing to save: the run produced no intention")
    bad = [r.get("source") for r in rows if not str(r.get("source", "")).startswith("distilled:")]
    if bad:
        raise ValueError(f"only distilled rows can be saved here, got source {bad[0]!r}")
    t0 = time.perf_counter()
    base = user_data_dir(root)
    data = base / USER_DATA_SUBDIR
    ipath = data / "intentions" / "part-user.parquet"
    ppath = data / "products" / "part-user.parquet"
    with _locked(base / ".save.lock"):
        old_rows = pq.read_table(ipath).to_pylist() if ipath.exists() else []
        old_products = pq.read_table(ppath).to_pylist() if ppath.exists() else []
        new_ids = {r["intention_id"] for r in rows}
        kept = [r for r in old_rows if r["intention_id"] not in new_ids]
        replaced = len(old_rows) - len(kept)
        merged = kept + [{c: r.get(c) for c in INTENTION_COLUMNS} for r in rows]
        prods = {p["asin"]: p for p in old_products}
        for p in products:
            prods[p.asin] = {c: getattr(p, c) for c in PRODUCT_COLUMNS}
        write_table_atomic(pa.Table.from_pylist(merged, schema=INTENTION_SCHEMA), ipath)
        write_table_atomic(pa.Table.from_pylist(list(prods.values()), schema=PRODUCT_SCHEMA), ppath)
        kb_dir = user_kb_path(root, name)
        build_kb([data], kb_dir, progress=False)
    return SaveReport(kb_dir, len(rows) - replaced, replaced, len(merged), time.perf_counter() - t0)
