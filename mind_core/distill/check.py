"""Does a backend work? One call per MIND stage on a built-in pair, before a long run.

:func:`check_backend` starts the backend a :class:`~mind_core.lvlm.registry.BackendConfig` describes, then sends
MIND's own three requests (the prompts of :mod:`mind_core.distill.prompts`, so the chat template, the system
prompt, the forced opening and the filter question are the real ones) for a built-in pair whose images are drawn
with PIL (no file, no network):

1. describe product A from its image;
2. one intention (``usedFor``) from the stacked pair image;
3. the role-aware filter on that intention, with P(yes).

It times each step, says whether the model saw the images and whether P(yes) came back, and turns every failure
into a diagnosis with what to do: the server is down, the URL or its path is wrong, the model is not served, it is
not a vision model (or the server drops images), it has no chat template, the server returns no logprobs, the API
key is refused, the answer timed out. For an OpenAI-compatible server it first asks ``GET /models`` itself (so a
wrong path and the served model names are reported), and sends one short request with and one without an image:
a server that drops images (``transformers serve`` with a text-only model) reports the same prompt token count.

``report.ok`` is True only when every stage worked, the images reached the model (unless images are not checked
or the backend is the text-only fallback, which reads OCR text and colours instead) and P(yes) came back (unless
``need_p_yes=False``). The CLI (``python -m mind_core check-backend``) and the try page's "Test backend" button
both print :meth:`CheckReport.lines`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, ImageDraw

from mind_core.distill.parsing import parse_filter, parse_intention
from mind_core.distill.prompts import describe_request, filter_request, intention_request
from mind_core.distill.stages import call_backend, clean_description, pair_image
from mind_core.lvlm.base import Backend, BackendError, GenParams, LVLMRequest, LVLMResponse, answer_text
from mind_core.schema import Product

RELATION = "usedFor"
#: short answers: the check is about whether each stage works, not about quality
CHECK_PARAMS = GenParams(do_sample=False, temperature=0.0, max_new_tokens=48)

PRODUCT_A = Product(
    asin="CHECK00001",
    title="Red ceramic coffee mug, 12 oz",
    description="A glossy red stoneware mug with a large handle; dishwasher and microwave safe.",
    category="check",
)
PRODUCT_B = Product(
    asin="CHECK00002",
    title="Medium roast ground coffee, 1 lb bag",
    description="Arabica coffee, ground for drip machines, in a resealable brown bag.",
    category="check",
)


def sample_images() -> tuple[Image.Image, Image.Image]:
    """Two 224 px product pictures drawn with PIL: a red mug and a brown coffee bag, each with a label."""
    mug = Image.new("RGB", (224, 224), "white")
    d = ImageDraw.Draw(mug)
    d.rounded_rectangle((52, 50, 150, 180), radius=12, fill=(200, 30, 40))
    d.ellipse((140, 80, 190, 150), outline=(200, 30, 40), width=12)
    d.text((62, 190), "COFFEE MUG 12 oz", fill="black")
    bag = Image.new("RGB", (224, 224), "white")
    d = ImageDraw.Draw(bag)
    d.polygon([(60, 40), (164, 40), (180, 200), (44, 200)], fill=(120, 75, 40))
    d.rectangle((70, 100, 154, 140), fill=(240, 230, 210))
    d.text((80, 112), "COFFEE 1 lb", fill="black")
    return mug, bag


# --- results -----------------------------------------------------------------------------------------------------


@dataclass
class StageResult:
    stage: str
    ok: bool
    seconds: float | None = None
    #: the start of the answer, or what happened
    summary: str = ""
    error: str | None = None


@dataclass
class Diagnosis:
    #: server_down, wrong_url, model_not_found, not_vision, images_ignored, no_chat_template, no_logprobs, auth,
    #: timeout, no_verdict, error
    code: str
    message: str
    #: False: a warning (the stages still work)
    fatal: bool = True


@dataclass
class CheckReport:
    backend: str
    model: str | None = None
    stages: list[StageResult] = field(default_factory=list)
    #: "yes", "no", "text-only fallback (OCR + colours)", "not checked", "unknown"
    images: str = "not checked"
    p_yes: float | None = None
    diagnoses: list[Diagnosis] = field(default_factory=list)
    #: the served models (OpenAI-compatible servers), when the server lists them
    served_models: list[str] = field(default_factory=list)
    #: strings :meth:`lines` replaces with "the model server" (the server's address on a shared dashboard)
    hidden: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.stages) and all(s.ok for s in self.stages) and not any(d.fatal for d in self.diagnoses)

    def add(self, code: str, message: str, fatal: bool = True) -> None:
        if all(d.code != code for d in self.diagnoses):
            self.diagnoses.append(Diagnosis(code, message, fatal))

    def stage(self, name: str) -> StageResult | None:
        return next((s for s in self.stages if s.stage == name), None)

    def lines(self) -> list[str]:
        """The report as plain text lines (the CLI prints them; the try page shows them escaped)."""
        out = [f"backend: {self.backend}"]
        if self.model:
            out.append(f"model:   {self.model}")
        for s in self.stages:
            took = f"{s.seconds:7.2f} s" if s.seconds is not None else "      - "
            mark = "ok  " if s.ok else "FAIL"
            text = s.error if s.error else s.summary
            out.append(f"  {mark} {s.stage:<9} {took}  {_short(text, 100)}")
        out.append(f"images seen by the model: {self.images}")
        out.append(f"P(yes): {'not available' if self.p_yes is None else format(self.p_yes, '.3f')}")
        for d in self.diagnoses:
            out.append(f"{'problem' if d.fatal else 'note'} [{d.code}]: {d.message}")
        out.append("result: every stage works" if self.ok else "result: NOT ready (see above)")
        for secret in sorted(self.hidden, key=len, reverse=True):
            out = [line.replace(secret, "the model server") for line in out]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "model": self.model,
            "ok": self.ok,
            "images": self.images,
            "p_yes": self.p_yes,
            "served_models": self.served_models,
            "stages": [s.__dict__ for s in self.stages],
            "diagnoses": [d.__dict__ for d in self.diagnoses],
        }


def _short(text: str | None, n: int) -> str:
    one = re.sub(r"\s+", " ", text or "").strip()
    return one if len(one) <= n else one[: n - 3] + "..."


# --- diagnoses from messages ---------------------------------------------------------------------------------------

_PATTERNS: tuple[tuple[str, str], ...] = (
    ("server_down", r"cannot reach|cannot connect|became unreachable|connection refused"),
    ("auth", r"HTTP 40[13]|API key"),
    ("model_not_found", r"is not served|pinned to|model .{0,80}(not found|does not exist)|no such model"),
    ("no_chat_template", r"chat[ _]template"),
    (
        "not_vision",
        r"not a vision|no vision tower|no image processor|not a multimodal|does not support (image|multimodal)"
        r"|image input",
    ),
    ("wrong_url", r"HTTP 404|/models answered HTTP|not an http"),
    ("timeout", r"timed out|timeout"),
)

_ADVICE = {
    "server_down": "nothing answers at that address: start the server (e.g. `make serve-local`) or fix --endpoint",
    "auth": "the server refused the request: check the API key (--api-key-env VAR or the page's field)",
    "model_not_found": "the server does not serve that model: pass one of the names GET /v1/models lists with --model",
    "no_chat_template": "the model has no chat template: use an instruct / chat model, or give the server a template",
    "not_vision": "the model cannot take images: use a vision-language model, or run with --no-images",
    "wrong_url": "the URL or its path is wrong: the endpoint should be the server's base URL ending in /v1",
    "timeout": "the server did not answer in time: raise the timeout, or check that the server is not overloaded",
}


def classify(message: str) -> str:
    """The diagnosis code for an error message (``error`` when none fits)."""
    for code, pattern in _PATTERNS:
        if re.search(pattern, message or "", re.IGNORECASE):
            return code
    return "error"


def _diagnose(report: CheckReport, message: str, model: str | None = None) -> None:
    code = classify(message)
    if (
        code in ("wrong_url", "model_not_found")
        and report.served_models
        and model
        and model not in report.served_models
    ):
        # GET /models worked, so the path is right: the 404 is about the model name
        served = ", ".join(report.served_models[:5])
        report.add("model_not_found", f"the server does not serve {model!r}; it serves: {served}. Pass --model NAME")
        return
    advice = _ADVICE.get(code)
    report.add(code, f"{advice} ({_short(message, 300)})" if advice else _short(message, 400))


# --- the OpenAI-compatible server probe ----------------------------------------------------------------------------


def probe_openai(options: dict[str, Any], report: CheckReport) -> bool:
    """Ask ``GET <base>/models`` directly: is anything there, is the path right, which models are served?
    False when nothing can work (the report says why)."""
    import httpx

    from mind_core.lvlm.openai_backend import normalize_endpoint

    try:
        base, _ = normalize_endpoint(options.get("endpoint") or "")
    except BackendError as err:
        report.add("wrong_url", str(err))
        return False
    headers = {"Authorization": f"Bearer {options['api_key']}"} if options.get("api_key") else {}
    timeout = httpx.Timeout(5.0, read=float(options.get("timeout_s") or 30.0))
    t0 = time.perf_counter()
    try:
        resp = httpx.get(base + "/models", headers=headers, timeout=timeout)
    except (httpx.ConnectError, httpx.ConnectTimeout) as err:
        report.stages.append(StageResult("connect", False, time.perf_counter() - t0, error=f"{base}: {err}"))
        report.add("server_down", f"{_ADVICE['server_down']} (cannot connect to {base}: {err})")
        return False
    except httpx.HTTPError as err:
        report.stages.append(StageResult("connect", False, time.perf_counter() - t0, error=f"{base}: {err}"))
        report.add("error", f"{base}/models: {type(err).__name__}: {err}")
        return False
    seconds = time.perf_counter() - t0
    if resp.status_code in (401, 403):
        report.stages.append(StageResult("connect", False, seconds, error=f"HTTP {resp.status_code}"))
        report.add("auth", f"{_ADVICE['auth']} (HTTP {resp.status_code} from {base}/models)")
        return False
    if resp.status_code == 404:
        hint = _suggest_base(base, headers, timeout)
        report.stages.append(StageResult("connect", False, seconds, error=f"HTTP 404 from {base}/models"))
        report.add("wrong_url", f"{_ADVICE['wrong_url']}: {base}/models answered HTTP 404" + hint)
        return False
    ids: list[str] = []
    if resp.status_code == 200:
        try:
            ids = [str(m["id"]) for m in resp.json().get("data", [])]
        except (ValueError, KeyError, TypeError, AttributeError):
            ids = []
    report.served_models = ids
    listed = f"{len(ids)} model(s): {', '.join(ids[:5])}" if ids else f"HTTP {resp.status_code}, no model list"
    report.stages.append(StageResult("connect", True, seconds, summary=f"{base}/models: {listed}"))
    model = options.get("model")
    if not model and not ids:
        report.add("model_not_found", f"{base}/models lists no model; pass the model name with --model")
        return False
    return True


def _suggest_base(base: str, headers: dict, timeout: Any) -> str:
    """Where the API really is, when ``base`` is wrong: the same host's ``/v1``."""
    import httpx

    root = re.match(r"^https?://[^/]+", base)
    if root is None or root.group(0) + "/v1" == base:
        return ""
    try:
        ok = httpx.get(root.group(0) + "/v1/models", headers=headers, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return ""
    return f"; {root.group(0)}/v1/models answers: use --endpoint {root.group(0)}/v1" if ok else ""


# --- the check -------------------------------------------------------------------------------------------------------


def _timed(backend: Backend, req: LVLMRequest, params: GenParams) -> tuple[LVLMResponse, float]:
    t0 = time.perf_counter()
    out = call_backend(backend, [req], params)[0]
    return out, time.perf_counter() - t0


def _prompt_tokens(out: LVLMResponse) -> int | None:
    usage = out.meta.get("usage") or {}
    value = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    return int(value) if isinstance(value, int) else None


def _check_server_images(backend: Backend, image: Image.Image, report: CheckReport) -> bool:
    """One tiny request with and one without the image: does the server pass the image to the model?"""
    params = GenParams(do_sample=False, temperature=0.0, max_new_tokens=1)
    text = "What colour is the object in the image? One word."
    with_img, without = call_backend(
        backend, [LVLMRequest(prompt=text, images=[image]), LVLMRequest(prompt=text)], params
    )
    if with_img.error:
        report.images = "no"
        code = classify(with_img.error)
        advice = _ADVICE["not_vision"] if code in ("not_vision", "error") else _ADVICE.get(code, "")
        report.add(
            "not_vision" if code == "error" else code,
            f"{advice} (a request with an image failed: {_short(with_img.error, 300)})",
        )
        return False
    n_img, n_txt = _prompt_tokens(with_img), _prompt_tokens(without)
    if n_img is None or n_txt is None:
        report.images = "unknown (the server reports no token usage)"
        return True
    if n_img <= n_txt:
        report.images = "no"
        report.add(
            "images_ignored",
            f"the server accepted the image but the model never saw it ({n_img} prompt tokens with the image, "
            f"{n_txt} without): the model is not a vision model. Serve a vision-language model, or run with "
            "--no-images",
        )
        return False
    report.images = f"yes ({n_img - n_txt} image tokens)"
    return True


def check_backend(
    config: Any,
    *,
    use_images: bool = True,
    need_p_yes: bool = True,
    params: GenParams | None = None,
    opener: Callable[[Any], tuple[Backend, bool]] | None = None,
) -> CheckReport:
    """Run the check for a :class:`~mind_core.lvlm.registry.BackendConfig` (see the module docstring).
    ``opener(config) -> (backend, owned)`` builds the backend (default :func:`mind_core.distill.live.open_backend`,
    as the try page does: in-process models are loaded once and shared, server clients get interactive timeouts
    and few retries). Never raises for a backend problem: everything lands in the report."""
    from mind_core.distill.live import open_backend

    params = params or CHECK_PARAMS
    report = CheckReport(backend=config.describe())
    if config.kind == "openai" and config.get("detailed_errors") is False:
        from mind_core.lvlm.openai_backend import normalize_endpoint

        try:
            base, chat = normalize_endpoint(config.get("endpoint") or "")
            root = re.match(r"^https?://[^/]+", base)
            report.hidden = [chat, base, *([root.group(0)] if root else [])]
        except BackendError:
            pass
    problems = config.problems()
    if problems:
        report.stages.append(StageResult("start", False, error=problems[0]))
        _diagnose(report, problems[0])
        return report
    if config.kind == "openai" and not probe_openai(dict(config.options), report):
        return report

    t0 = time.perf_counter()
    try:
        backend, owned = (opener or open_backend)(config)
        load = getattr(backend, "load", None)
        if callable(load):  # the offline fallback loads lazily; time the load here, not in stage 1
            load()
    except BackendError as err:
        report.stages.append(StageResult("start", False, time.perf_counter() - t0, error=str(err)))
        _diagnose(report, str(err))
        return report
    except Exception as err:  # a library failing while loading a model
        message = f"{type(err).__name__}: {err}"
        report.stages.append(StageResult("start", False, time.perf_counter() - t0, error=message))
        _diagnose(report, message)
        return report
    report.model = backend.model
    report.stages.append(StageResult("start", True, time.perf_counter() - t0, summary=f"{backend.name} ready"))
    try:
        _run_stages(backend, config, report, use_images=use_images, need_p_yes=need_p_yes, params=params)
    except BackendError as err:
        report.stages.append(StageResult("(stopped)", False, error=str(err)))
        _diagnose(report, str(err), config.get("model"))
    finally:
        if owned:
            backend.close()
    return report


def _run_stages(
    backend: Backend, config: Any, report: CheckReport, *, use_images: bool, need_p_yes: bool, params: GenParams
) -> None:
    mug, bag = sample_images()
    text_only = bool(getattr(backend, "text_only", False))
    if not use_images:
        report.images = "not checked (--no-images)"
        mug = bag = None
    elif text_only:
        report.images = "text-only fallback (OCR text + colours, not pixels)"
    elif config.kind == "openai":
        _check_server_images(backend, mug, report)
    else:
        report.images = "yes (the model has a vision tower)"
    stacked = pair_image(mug, bag)[0] if mug is not None else None

    # stage 1: describe
    req = describe_request(PRODUCT_A, mug)
    out, secs = _timed(backend, req, params)
    text = "" if out.error else clean_description(out.text)
    report.stages.append(
        StageResult("describe", bool(text), secs, summary=text, error=out.error or (None if text else "empty"))
    )
    if out.error:
        _diagnose(report, out.error)

    # stage 2: intend
    req = intention_request(PRODUCT_A, PRODUCT_B, RELATION, stacked)
    out, secs = _timed(backend, req, params)
    intention, flags = parse_intention(answer_text(req, out), RELATION) if not out.error else ("", ["empty"])
    ok = not out.error and "empty" not in flags
    note = f" [flags: {', '.join(flags)}]" if flags and ok else ""
    report.stages.append(
        StageResult(
            "intend", ok, secs, summary=intention + note, error=out.error or (None if ok else "empty intention")
        )
    )
    if out.error:
        _diagnose(report, out.error)
    elif "no_phrase" in flags:
        report.add(
            "no_opening",
            "the intention does not begin with the required opening (the server cannot force it; the model "
            "ignored the instruction): distill keeps such rows with the flag no_phrase",
            fatal=False,
        )

    # stage 3: the role-aware filter
    req = filter_request(PRODUCT_A, PRODUCT_B, RELATION, intention or "they are both used for making coffee", stacked)
    out, secs = _timed(backend, req, params)
    verdict, _reason = parse_filter(out.text) if not out.error else (None, "")
    report.p_yes = out.p_yes
    ok = not out.error and (verdict is not None or out.p_yes is not None)
    summary = f"verdict {verdict or '(unreadable)'}: {out.text}"
    report.stages.append(
        StageResult("filter", ok, secs, summary=summary, error=out.error or (None if ok else "no verdict"))
    )
    if out.error:
        _diagnose(report, out.error)
    elif verdict is None:
        report.add(
            "no_verdict",
            "the filter answer does not begin with Yes or No (distill flags such rows filter_unparsed)",
            fatal=not ok,
        )
    if not out.error and out.p_yes is None:
        why = out.meta.get("logprobs")
        report.add(
            "no_logprobs",
            "P(yes) is not available: "
            + ("the server returned no logprobs" if config.kind == "openai" else f"{backend.name} gave none")
            + (" (they were unreadable)" if why == "unreadable" else "")
            + ". The verdict still comes from the answer's first word; `rescore` and P(yes) thresholds need "
            "logprobs (vLLM, SGLang, llama.cpp server return them). --no-p-yes accepts this",
            fatal=need_p_yes,
        )
