"""Try a product: one pair through MIND's three stages in a background thread that outlives Streamlit reruns.

:class:`LiveRun` runs :func:`~mind_core.distill.pipeline.iter_pair` and keeps its events; the page polls them (the
dashboard's ``live_view`` turns them into what is shown). :meth:`LiveRun.stop` sets a cancel event the pipeline
checks before every backend call, so finished work is kept. :func:`open_backend` loads in-process models (the
offline fallback, transformers) once per process and shares them between runs and browser sessions; a client
for a server is made per run, because its API key belongs to one browser session. The key lives only in the
:class:`~mind_core.lvlm.registry.BackendConfig` the page keeps in its session: it is excluded from ``repr``, from
every cache key, and never written anywhere.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from PIL import Image

from mind_core.distill.pipeline import DistillOptions, PairEvent, PairResult, iter_pair
from mind_core.lvlm.base import Backend, BackendError, GenParams, source_label
from mind_core.lvlm.registry import BackendConfig, make_backend
from mind_core.schema import RELATIONS, Product

log = logging.getLogger(__name__)

#: relations preselected on the page: three for real LVLM backends; one for the offline fallback, whose calls take
#: tens of seconds each on a 2-core CPU (measured timings: docs/measurements.md, "Try a product")
DEFAULT_RELATIONS: tuple[str, ...] = ("usedFor", "capableOf", "isA")
DEFAULT_RELATIONS_OFFLINE: tuple[str, ...] = ("usedFor",)
#: an interactive run waits at most this long for one answer (a batch run waits 120 s)
INTERACTIVE_TIMEOUT_S = 60.0
#: retries per request in the page (the CLI's 4 would keep a user waiting minutes on a dead server)
INTERACTIVE_MAX_RETRIES = 1


def default_relations(kind: str) -> list[str]:
    """The relations the page preselects for a backend kind."""
    return list(DEFAULT_RELATIONS_OFFLINE if kind == "offline" else DEFAULT_RELATIONS)


_local_backends: dict[tuple, Backend] = {}
_local_lock = threading.Lock()


def open_backend(config: BackendConfig) -> tuple[Backend, bool]:
    """``(backend, owned)``: build the configured backend. In-process models are loaded once per process and
    shared (``owned`` False: do not close them); a server client is made for this run (``owned`` True) with
    interactive timeouts. Raises :class:`BackendError` with what to do."""
    problems = config.problems()
    if problems:
        raise BackendError(problems[0])
    if not config.info.in_process:
        timeout = float(config.get("timeout_s") or INTERACTIVE_TIMEOUT_S)
        client = config.with_options(
            timeout_s=timeout,
            connect_timeout=min(5.0, timeout),
            max_retries=INTERACTIVE_MAX_RETRIES,
            backoff_max=2.0,
            retry_after_max=10.0,
        )
        return make_backend(client), True
    key = config.cache_key()
    with _local_lock:  # one load at a time; a second session waits for the first and reuses it
        backend = _local_backends.get(key)
        if backend is None:
            backend = _local_backends[key] = make_backend(config)
    return backend, False


# --- the run ---------------------------------------------------------------------------------------------------


class LiveRun:
    """One pair through the three MIND stages in a background thread.

    ``filter_mode`` / ``critic`` / ``critic_threshold``: who decides the verdicts (see
    :mod:`mind_core.distill.pipeline`; the page defaults to "both" with the shipped critic).

    The page keeps the object in ``st.session_state``; reruns (a click anywhere, the Stop button) only read its
    events (:meth:`snapshot`; the dashboard's ``live_view`` renders them). The thread never touches Streamlit.
    ``backend_factory`` builds the backend (default :func:`open_backend`, which the page always uses).
    """

    def __init__(
        self,
        a: Product,
        b: Product,
        images: Mapping[str, Image.Image | None],
        config: BackendConfig,
        relations: Sequence[str],
        *,
        max_new_tokens: int = 512,
        run_filter: bool = True,
        filter_mode: str = "lvlm",
        critic: Callable[[Sequence[dict]], Sequence[float]] | None = None,
        critic_threshold: float = 0.5,
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
            relations=self.relations,
            run_filter=run_filter,
            params=GenParams(max_new_tokens=int(max_new_tokens)),
            filter_mode=filter_mode,
            critic=critic,
            critic_threshold=critic_threshold,
        )
        self._factory = backend_factory
        #: requests per backend call; None: all relations of a stage at once on an OpenAI server (they run
        #: concurrently; Stop then acts between stages), one at a time on local models (Stop acts between calls)
        self.calls_per_generate = calls_per_generate
        self.cancel_event = threading.Event()
        self.events: list[PairEvent] = []
        self.fatal: str | None = None
        self.backend_label = config.describe()
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

    # -- what the page reads
    def snapshot(self) -> tuple[list[PairEvent], str, float]:
        """``(events so far, phase, elapsed seconds)``, read consistently while the thread goes on."""
        with self._lock:
            events = list(self.events)
        phase = self.phase  # read once: the thread may finish while the caller renders
        end = self.finished_at if phase == "finished" and self.finished_at else time.monotonic()
        return events, phase, end - self.started_at
