"""OpenAI-compatible backend: any server exposing ``POST /v1/chat/completions`` (vLLM, SGLang, Ollama, LM Studio,
llama.cpp server, OpenAI itself...).

* Images go as base64 data URIs (``data:image/png;base64,...`` or JPEG) in ``image_url`` content parts, before the
  text of the user turn.
* ``concurrency`` requests run in parallel in a thread pool over one ``httpx.Client`` (keep-alive).
* Timeouts: ``connect_timeout`` (default 5 s) and ``read_timeout`` (default 120 s) per HTTP call.
* Retries (``max_retries``, default 4; exponential backoff ``backoff_base * 2**attempt`` capped at ``backoff_max``,
  with jitter) on HTTP 429 (the server's ``Retry-After`` is honoured, seconds or HTTP date, up to
  ``retry_after_max`` = 120 s), 5xx, connection
  errors, timeouts and bodies that are not the expected JSON.
* Not retried: 401/403 and 404 raise :class:`BackendError` (the whole batch cannot work: check the API key / the
  endpoint path and model name); other 4xx (e.g. 400 context too long) fail that one request with the server's
  message in ``LVLMResponse.error``.
* A server that cannot be reached at all raises :class:`BackendError` naming the URL: at once when the first
  contact (``GET /models`` preflight) is refused, and during a batch when a request still cannot connect after
  its retries — so a batch stops cleanly and can resume later instead of filling the KB with errors.
* The API key is sent as ``Authorization: Bearer``; it is never logged and ``repr()`` masks it. A rejected or
  missing key is explained naming where the key came from (``api_key_source``: the variable of
  ``--api-key-env``, ``OPENAI_API_KEY``, or a phrase such as "the API key field" on a page).
* ``detailed_errors`` (default True): messages name the server's URL and quote what it answered (up to 500
  characters), which helps whoever runs it. False (a shared dashboard, where visitors read the messages): they say
  "the model server" and the HTTP status only; the detailed message goes to the log for the operator.

Prefill (the forced answer opening, ``LVLMRequest.prefill``): servers differ, hence ``prefill_mode``:

* ``"auto"`` (default) — nothing extra is sent: the prompt already tells the model how to begin. If the answer
  starts with the prefill (case- and whitespace-insensitive), the prefill is cut off and
  ``meta["prefill_applied"] = True``; otherwise the text is returned as the model wrote it with
  ``meta["prefill_applied"] = False`` (the distill parser flags it).
* ``"continue"`` — the prefill is sent as a final assistant message together with vLLM's extra body
  ``{"continue_final_message": true, "add_generation_prompt": false}``, so the model continues it (vLLM, SGLang;
  also what llama.cpp server does with a trailing assistant message). ``meta["prefill_applied"] = True``.

P(yes): filter requests (``want_yes_prob``) ask for ``logprobs: true, top_logprobs: 20``; p_yes is computed from
the first answer token's top logprobs (yes/no variants, normalised; see :mod:`mind_core.lvlm`). None when the
server returns no logprobs. A server that rejects the logprobs fields with HTTP 400 is asked again without them
and not asked for logprobs again.

Servers differ from the OpenAI API in ways this client handles (measured against ``transformers serve`` 5.24,
vLLM-style servers and the test double; docs/measurements.md, "A real server"):

* error bodies: ``{"error": {"message": ...}}`` (OpenAI, vLLM), ``{"detail": ...}`` (FastAPI: ``transformers
  serve``), plain text; all are quoted the same way;
* a model name the server does not serve: HTTP 404 (vLLM, Ollama) or HTTP 400 "Server is pinned to 'X'; requested
  'Y'" (``transformers serve`` started with a model): both stop the batch with :class:`BackendError`;
* logprobs: ``transformers serve`` ignores ``logprobs`` / ``top_logprobs`` (HTTP 200 without them; p_yes None,
  one warning), others reject them with HTTP 400 (asked again without);
* images sent to a text-only model: vLLM answers HTTP 400, ``transformers serve`` drops them silently (the answer
  is blind; ``python -m mind_core check-backend`` notices it from the prompt token counts);
* ``GET /models``: a pinned ``transformers serve`` lists its one model (the id is the path or hub id it was
  started with); unpinned, it lists the models in the local Hugging Face cache.
"""

from __future__ import annotations

import base64
import email.utils
import io
import logging
import random
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from PIL import Image

from mind_core.lvlm.base import (
    BackendError,
    GenParams,
    LVLMRequest,
    LVLMResponse,
    is_filler_token,
    yes_no_from_top_logprobs,
)
from mind_core.lvlm.registry import BackendOption, check_http_url, register_backend

log = logging.getLogger(__name__)

PREFILL_MODES = ("auto", "continue")
DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"
#: how messages name the server when ``detailed_errors`` is off
ANONYMOUS_SERVER = "the model server"


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class _Unreachable(Exception):
    pass


class _RequestFailed(Exception):
    def __init__(self, message: str, server_text: str = ""):
        super().__init__(message)
        self.server_text = server_text


def normalize_endpoint(endpoint: str) -> tuple[str, str]:
    """``(base, chat_url)`` from ``http://h:8000``, ``http://h:8000/v1`` or ``.../v1/chat/completions``."""
    url = (endpoint or "").strip().rstrip("/")
    if not re.match(r"^https?://[^/\s]+", url):
        raise BackendError(f"endpoint {endpoint!r} is not an http(s) URL; expected e.g. http://localhost:8000/v1")
    if url.endswith("/chat/completions"):
        base = url[: -len("/chat/completions")]
    elif re.search(r"/v\d+$", url):
        base = url
    elif re.match(r"^https?://[^/]+$", url):
        base = url + "/v1"
    else:
        base = url
    return base, base + "/chat/completions"


def encode_image(image: Image.Image, fmt: str = "PNG", jpeg_quality: int = 90) -> str:
    """A data URI for ``image`` (PNG keeps pixels exact; JPEG is smaller)."""
    fmt = fmt.upper()
    if fmt == "JPG":
        fmt = "JPEG"
    if fmt not in ("PNG", "JPEG"):
        raise BackendError(f"image_format must be PNG or JPEG, not {fmt!r}")
    img = image
    png_modes = ("RGB", "RGBA", "L", "LA", "P", "1", "I", "I;16")
    if (fmt == "JPEG" and img.mode not in ("RGB", "L")) or (fmt == "PNG" and img.mode not in png_modes):
        img = img.convert("RGB")
    buf = io.BytesIO()
    if fmt == "JPEG":
        img.save(buf, format="JPEG", quality=jpeg_quality)
    else:
        img.save(buf, format="PNG")
    mime = "image/png" if fmt == "PNG" else "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _server_message(resp: Any) -> str:
    """What the server said in an error body: OpenAI / vLLM ``{"error": {"message": ...}}``, a bare
    ``{"error": "..."}``, ``{"message": ...}``, or FastAPI's ``{"detail": "..."}`` / ``{"detail": [{"msg": ...}]}``
    (``transformers serve``); else the start of the body."""
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:500].strip()
    if isinstance(body, dict):
        if "error" not in body and "detail" in body:
            detail = body["detail"]
            if isinstance(detail, list):
                parts = [
                    f"{'.'.join(str(x) for x in d.get('loc', ()))}: {d.get('msg')}" if isinstance(d, dict) else str(d)
                    for d in detail
                ]
                return "; ".join(parts)[:500]
            return str(detail)[:500]
        err = body.get("error", body)
        if isinstance(err, dict):
            return str(err.get("message") or err)[:500]
        if isinstance(body.get("message"), str):
            return body["message"][:500]
        return str(err)[:500]
    return str(body)[:500]


#: how servers say that the requested model is not the one they serve (the status varies: vLLM 404,
#: ``transformers serve`` 400 "Server is pinned to 'X'; requested 'Y'.", Ollama 404 "model 'x' not found")
_MODEL_NOT_SERVED = re.compile(
    r"pinned to|model .{0,80}(not found|does not exist|not served)|no such model|unknown model", re.IGNORECASE
)


def _strip_prefill(text: str, prefill: str) -> str | None:
    """The text after ``prefill`` when ``text`` starts with it (ignoring case, spacing and markdown), else None."""
    words = prefill.split()
    if not words:
        return text
    pattern = r"^[\s*_\"'`]*" + r"\s+".join(re.escape(w) for w in words)
    m = re.match(pattern, text, flags=re.IGNORECASE)
    if not m:
        return None
    return text[m.end() :].lstrip(" \t\n*_\"'`:")


def _describe(opts: dict[str, Any]) -> str:
    model = opts.get("model") or "the server's first model"
    return f"openai · {model} at {opts.get('endpoint') or '(no URL)'} — an OpenAI-compatible server"


def _non_negative_int(value) -> int:
    import argparse

    try:
        n = int(value)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {value!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return n


@register_backend(
    "openai",
    summary="any OpenAI-compatible server (vLLM, SGLang, Ollama, llama.cpp server ...)",
    title="OpenAI-compatible server",
    in_process=False,
    describe=_describe,
    options=(
        BackendOption(
            "endpoint",
            "the server's base URL, e.g. http://localhost:8000/v1 (vLLM, SGLang, Ollama or any OpenAI-compatible "
            "server)",
            required=True,
            setting="openai_endpoint",
            check=check_http_url,
            label="Server URL",
            placeholder="http://localhost:8000/v1",
        ),
        BackendOption(
            "model",
            "model name on the server (default: the server's first model)",
            setting="openai_model",
            label="Model (empty: the server's first model)",
        ),
        BackendOption(
            "api_key",
            "API key, sent as Authorization: Bearer",
            secret=True,
            setting="openai_api_key",
            cli=False,
            label="API key (optional)",
        ),
        BackendOption("concurrency", "parallel requests (default 8)", type=int, label="Parallel requests"),
        BackendOption(
            "detailed_errors",
            "name the URL and quote the server's answer in error messages (default on; off on a shared dashboard)",
            type=lambda v: v if isinstance(v, bool) else str(v).strip().lower() in ("1", "true", "yes", "on"),
            cli=False,
        ),
        BackendOption(
            "timeout_s",
            "seconds to wait for one answer before it counts as timed out (default 120); with --max-retries it "
            "bounds what a hung server costs: timeout x (retries + 1) per request",
            type=float,
            arg="read_timeout",
            setting="openai_timeout_s",
            cli_name="timeout",
            label="Seconds to wait for one answer",
        ),
        BackendOption(
            "max_retries",
            "retries of a request after a timeout, a connection error, 429 or 5xx (default 4; 0 = no retry)",
            type=_non_negative_int,
            form=False,
        ),
    ),
)
class OpenAIBackend:
    """See the module docstring. ``generate`` keeps request order; per-request failures go to ``error``."""

    name = "openai"
    text_only = False

    def __init__(
        self,
        endpoint: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        api_key_source: str = DEFAULT_API_KEY_ENV,
        concurrency: int = 8,
        connect_timeout: float = 5.0,
        read_timeout: float = 120.0,
        max_retries: int = 4,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        retry_after_max: float = 120.0,
        prefill_mode: str = "auto",
        image_format: str = "PNG",
        top_logprobs: int = 20,
        extra_body: dict[str, Any] | None = None,
        preflight: bool = True,
        detailed_errors: bool = True,
    ):
        import httpx

        self._httpx = httpx
        self.base_url, self.url = normalize_endpoint(endpoint)
        if prefill_mode not in PREFILL_MODES:
            raise BackendError(f"prefill_mode must be one of {PREFILL_MODES}, not {prefill_mode!r}")
        if int(concurrency) < 1:
            raise BackendError("concurrency must be at least 1")
        if int(max_retries) < 0:
            raise BackendError("max_retries must be >= 0")
        #: where the key came from, named in error hints (the key itself is never shown)
        self.api_key_source = api_key_source or DEFAULT_API_KEY_ENV
        self.detailed_errors = bool(detailed_errors)
        self._api_key = api_key or None
        self.concurrency = int(concurrency)
        self.max_retries = int(max_retries)
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        self.retry_after_max = float(retry_after_max)
        self.prefill_mode = prefill_mode
        self.image_format = image_format.upper()
        encode_image(Image.new("RGB", (1, 1)), self.image_format)  # validates the format early
        self.top_logprobs = int(top_logprobs)
        self.extra_body = dict(extra_body or {})
        self._logprobs_ok = True
        self._warned_no_logprobs = False
        self._preflight_done = False
        self._lock = threading.Lock()
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        self.timeout = httpx.Timeout(connect=connect_timeout, read=read_timeout, write=read_timeout, pool=None)
        self._client = httpx.Client(
            headers=headers,
            timeout=self.timeout,
            limits=httpx.Limits(max_connections=self.concurrency + 2, max_keepalive_connections=self.concurrency + 2),
        )
        self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="openai-backend")
        # preflight: GET /models once, on the first generate() (at once when the model name must be discovered)
        self._preflight_done = not preflight
        self.model = model or self._discover_model()

    # ----------------------------------------------------------------------------------------------------------
    def __repr__(self) -> str:
        key = "***" if self._api_key else None
        return (
            f"OpenAIBackend(url={self.url!r}, model={self.model!r}, api_key={key!r}, "
            f"concurrency={self.concurrency}, prefill_mode={self.prefill_mode!r})"
        )

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._client.close()

    def __enter__(self) -> OpenAIBackend:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ----------------------------------------------------------------------------------------------------------
    def _auth_hint(self) -> str:
        """What to do about a 401/403, naming where the key came from: ``$VAR`` for an environment variable
        (``--api-key-env VAR``, ``OPENAI_API_KEY``), else the phrase given (e.g. "the API key field")."""
        source = self.api_key_source
        is_var = re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", source) is not None
        where = f"${source}" if is_var else source
        if self._api_key:
            return f"the server rejected the API key; check the key in {where}"
        if is_var:
            return f"the server wants an API key; set it in {where} (or pass --api-key-env VAR)"
        return f"the server wants an API key; enter it in {where}"

    def _say(self, message: str, detail: str = "") -> str:
        """An error message: ``message`` with ``{url}`` / ``{base}`` filled in, then ``detail`` (what the server
        said, a library's error). Without ``detailed_errors`` the server is "the model server" and ``detail`` is
        left out; the full message is logged for the operator."""
        full = message.replace("{url}", self.url).replace("{base}", self.base_url) + detail
        if self.detailed_errors:
            return full
        log.warning("model server error: %s", full)
        return message.replace("{url}", ANONYMOUS_SERVER).replace("{base}", ANONYMOUS_SERVER)

    def _said(self, resp: Any) -> str:
        return f": {_server_message(resp)}"

    def _get_models(self) -> Any:
        httpx = self._httpx
        url = self.base_url + "/models"
        try:
            resp = self._client.get(url)
        except (httpx.ConnectError, httpx.ConnectTimeout) as err:
            if not self.detailed_errors:
                raise BackendError(
                    self._say("cannot reach {base}; it may be down: try again later", f" ({err})")
                ) from None
            raise BackendError(
                f"cannot reach the OpenAI-compatible server at {self.base_url} ({err}); is it "
                "running and is --endpoint right?"
            ) from None
        except httpx.HTTPError as err:
            raise BackendError(self._say("{base} did not answer GET /models", f": {err}")) from None
        if resp.status_code in (401, 403):
            raise BackendError(self._say(f"HTTP {resp.status_code} from {{base}}/models: {self._auth_hint()}"))
        return resp

    def _discover_model(self) -> str:
        resp = self._get_models()
        self._preflight_done = True
        if resp.status_code != 200:
            raise BackendError(
                self._say(
                    f"no --model given and GET {{base}}/models answered HTTP {resp.status_code}; "
                    "pass the model name the server serves with --model"
                )
            )
        try:
            ids = [m["id"] for m in resp.json().get("data", [])]
        except (ValueError, KeyError, TypeError, AttributeError):
            ids = []
        if not ids:
            raise BackendError(self._say("no --model given and {base}/models lists no model; pass --model"))
        if len(ids) > 1:
            log.info(
                "server at %s serves %d models; using %s (pass --model to choose)", self.base_url, len(ids), ids[0]
            )
        return ids[0]

    def _preflight(self) -> None:
        with self._lock:
            if self._preflight_done:
                return
            self._get_models()  # any HTTP answer (even 404: not all servers list models) means it is up
            self._preflight_done = True

    # ----------------------------------------------------------------------------------------------------------
    def _payload(self, req: LVLMRequest, params: GenParams, with_logprobs: bool) -> dict[str, Any]:
        messages: list[dict[str, Any]] = []
        if req.system:
            messages.append({"role": "system", "content": req.system})
        if req.images:
            content: Any = [
                {"type": "image_url", "image_url": {"url": encode_image(im, self.image_format)}} for im in req.images
            ]
            content.append({"type": "text", "text": req.prompt})
        else:
            content = req.prompt
        messages.append({"role": "user", "content": content})
        body: dict[str, Any] = {"model": self.model, "messages": messages, "max_tokens": int(params.max_new_tokens)}
        if params.do_sample and params.temperature > 0:
            body["temperature"] = float(params.temperature)
            if params.top_p is not None:
                body["top_p"] = float(params.top_p)
        else:
            body["temperature"] = 0.0
        if params.seed is not None:
            body["seed"] = int(params.seed)
        if req.prefill and self.prefill_mode == "continue":
            messages.append({"role": "assistant", "content": req.prefill})
            body["continue_final_message"] = True
            body["add_generation_prompt"] = False
        if with_logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = self.top_logprobs
        body.update(self.extra_body)
        return body

    def _post_once(self, body: dict[str, Any]) -> dict[str, Any]:
        httpx = self._httpx
        try:
            resp = self._client.post(self.url, json=body)
        except (httpx.ConnectError, httpx.ConnectTimeout) as err:
            raise _Unreachable(self._say("cannot connect to {url}", f": {err}")) from None
        except httpx.TimeoutException as err:
            raise _Retryable(
                self._say(f"timed out after {self.timeout.read:g} s waiting for {{url}} ({type(err).__name__})")
            ) from None
        except httpx.HTTPError as err:  # reset connections, protocol errors
            raise _Retryable(self._say(f"{type(err).__name__} talking to {{url}}", f": {err}")) from None
        code = resp.status_code
        if code == 429:
            raise _Retryable(
                self._say("HTTP 429 rate limited by {url}", self._said(resp)),
                _parse_retry_after(resp.headers.get("retry-after")),
            )
        if code >= 500:
            raise _Retryable(
                self._say(f"HTTP {code} from {{url}}", self._said(resp)),
                _parse_retry_after(resp.headers.get("retry-after")),
            )
        if code in (401, 403):
            raise BackendError(self._say(f"HTTP {code} from {{url}}: {self._auth_hint()}"))
        if code == 404:
            if not self.detailed_errors:
                raise BackendError(
                    self._say("HTTP 404 from {url}: the configured model is not served", self._said(resp))
                )
            raise BackendError(
                f"HTTP 404 from {self.url}: {_server_message(resp)} — check the endpoint path "
                f"(it should end in /v1) and the model name {self.model!r}"
            )
        if code >= 400:
            said = _server_message(resp)
            if _MODEL_NOT_SERVED.search(said):  # no request can succeed with this model name
                raise BackendError(
                    self._say(f"HTTP {code} from {{url}}: model {self.model!r} is not served", f" ({said})")
                    + "; pass the model name GET /v1/models lists with --model"
                )
            if code == 422 and "continue_final_message" in said:
                raise BackendError(
                    self._say(f"HTTP {code} from {{url}}", f": {said}")
                    + "; this server cannot continue an assistant turn: use prefill_mode='auto'"
                )
            raise _RequestFailed(self._say(f"HTTP {code} from {{url}}", f": {said}"), server_text=said)
        try:
            data = resp.json()
            choice = data["choices"][0]
            message = choice["message"]
            content = message.get("content")
            if content is None:
                content = ""
            if not isinstance(content, str):
                raise TypeError("content is not a string")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as err:
            raise _Retryable(
                self._say(
                    "malformed response from {url}", f" ({type(err).__name__}: {err}); body starts {resp.text[:120]!r}"
                )
            ) from None
        return data

    def _sleep_before_retry(self, attempt: int, retry_after: float | None, stop: threading.Event) -> None:
        if retry_after is not None:
            delay = min(retry_after, self.retry_after_max) + random.uniform(0, 0.05)
        else:
            cap = min(self.backoff_max, self.backoff_base * (2**attempt))
            delay = random.uniform(cap / 2, cap)
        stop.wait(delay)

    def _one(self, req: LVLMRequest, params: GenParams, stop: threading.Event) -> LVLMResponse:
        want_lp = bool(req.want_yes_prob and self._logprobs_ok and self.top_logprobs > 0)
        body = self._payload(req, params, want_lp)
        last_error = ""
        attempt = 0
        t0 = time.perf_counter()
        while True:
            if stop.is_set():
                return LVLMResponse(text="", error="cancelled: the batch stopped on an earlier fatal error")
            try:
                data = self._post_once(body)
                break
            except _RequestFailed as err:
                if want_lp and "logprob" in err.server_text.lower():
                    log.warning("server rejected logprobs; asking without them from now on (p_yes will be None)")
                    self._logprobs_ok = False
                    want_lp = False
                    body = self._payload(req, params, False)
                    continue
                return LVLMResponse(text="", error=str(err), meta={"attempts": attempt + 1})
            except _Unreachable as err:
                last_error = str(err)
                if attempt >= self.max_retries:
                    raise BackendError(
                        self._say("{base} became unreachable", f": {last_error}")
                        + f" (after {attempt + 1} attempts); finished rows are kept, re-run to resume"
                    ) from None
                self._sleep_before_retry(attempt, None, stop)
            except _Retryable as err:
                last_error = str(err)
                if attempt >= self.max_retries:
                    return LVLMResponse(
                        text="",
                        error=f"{last_error} (gave up after {attempt + 1} attempts)",
                        meta={"attempts": attempt + 1},
                    )
                log.debug("retrying after: %s", last_error)
                self._sleep_before_retry(attempt, err.retry_after, stop)
            attempt += 1
        return self._to_response(req, data, attempt + 1, time.perf_counter() - t0)

    def _to_response(self, req: LVLMRequest, data: dict[str, Any], attempts: int, seconds: float) -> LVLMResponse:
        choice = data["choices"][0]
        raw = choice["message"].get("content") or ""
        meta: dict[str, Any] = {
            "attempts": attempts,
            "seconds": round(seconds, 4),
            "finish_reason": choice.get("finish_reason"),
            "model": data.get("model", self.model),
        }
        usage = data.get("usage")
        if isinstance(usage, dict):
            meta["usage"] = {k: usage.get(k) for k in ("prompt_tokens", "completion_tokens") if k in usage}
        text = raw
        if req.prefill:
            if self.prefill_mode == "continue":
                text, meta["prefill_applied"] = raw.lstrip(), True
            else:
                rest = _strip_prefill(raw, req.prefill)
                if rest is None:
                    text, meta["prefill_applied"] = raw.strip(), False
                else:
                    text, meta["prefill_applied"] = rest, True
        else:
            text = raw.strip()
        p_yes = None
        if req.want_yes_prob:
            p_yes, lp_meta = self._p_yes(choice)
            meta.update(lp_meta)
            if lp_meta.get("logprobs") == "not returned" and not self._warned_no_logprobs:
                self._warned_no_logprobs = True
                log.warning(
                    "the server answered without logprobs (e.g. `transformers serve` ignores them): p_yes is None; "
                    "the verdict comes from the answer's first word"
                )
        return LVLMResponse(text=text, p_yes=p_yes, meta=meta)

    @staticmethod
    def _p_yes(choice: dict[str, Any]) -> tuple[float | None, dict[str, Any]]:
        try:
            positions = (choice.get("logprobs") or {}).get("content") or []
        except AttributeError:
            positions = []
        for pos in positions[:4]:
            try:
                top = [(t["token"], t["logprob"]) for t in pos.get("top_logprobs") or []]
                if not top:
                    top = [(pos["token"], pos["logprob"])]
            except (KeyError, TypeError, AttributeError):
                return None, {"logprobs": "unreadable"}
            if is_filler_token(pos.get("token", "")):
                continue  # skip a leading space / "**" and read the first real answer token
            return yes_no_from_top_logprobs(top)
        return None, {"logprobs": "not returned"}

    # ----------------------------------------------------------------------------------------------------------
    def generate(self, requests: Sequence[LVLMRequest], params: GenParams) -> list[LVLMResponse]:
        """One response per request, in order; raises :class:`BackendError` when the server is unreachable, or
        answers 401/403/404 (nothing in the batch can succeed then)."""
        if not requests:
            return []
        self._preflight()
        stop = threading.Event()
        futures = [self._pool.submit(self._one, r, params, stop) for r in requests]
        out: list[LVLMResponse] = []
        fatal: BaseException | None = None
        for fut in futures:
            try:
                out.append(fut.result())
            except BackendError as err:
                if fatal is None:
                    fatal = err
                    stop.set()
                    for other in futures:
                        other.cancel()
            except Exception as err:  # an unexpected library error (or a future cancelled after a fatal one)
                if fatal is None:
                    out.append(LVLMResponse(text="", error=f"{type(err).__name__}: {err}"))
        if fatal is not None:
            raise fatal
        return out
