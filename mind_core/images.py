"""Product images: open and validate untrusted files, fetch URLs with a disk cache, build MIND's stacked pair image.

Used by the distillation pipeline and by the dashboard ("try a product" uploads), so every error a user can cause
becomes an :class:`ImageError` whose message can be shown as is.

* :func:`open_image` – bytes or a path -> RGB image. Rejects non-images, corrupt/truncated files, files over
  ``max_bytes`` and images over ``max_pixels`` (checked from the header, before any pixel is decoded, so a
  decompression bomb costs nothing). Normalises CMYK, palette, alpha (composited on white), 16-bit and float
  images, animations (first frame) and EXIF orientation.
* :func:`fetch_image` / :func:`fetch_first_image` – download with a short timeout, a disk cache keyed by the URL's
  hash under ``paths.cache_dir()/images``, and a short negative cache of failures (on disk per URL, and in memory
  per host), so a page full of unreachable URLs pays the timeout once, not once per URL. Never raise on network
  errors.
* :func:`stack_pair` – MIND's stage-2 input: A above B on a black canvas with a 20 px gap.
* :func:`pad_to_square` – LLaVA-1.5's ``expand2square`` (pad to a square with the processor's mean colour).
* :func:`placeholder_image` – a neat grey "image unavailable" tile.
* :class:`ImageCache` – a thread-safe LRU of decoded images bounded by their bytes (a 60 kB PNG can decode to
  120 MB, so a count of entries bounds nothing); :func:`image_nbytes`, :func:`thumbnail`.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

from mind_core.io import write_bytes

log = logging.getLogger(__name__)

MAX_IMAGE_BYTES = 20 * 1024 * 1024
MAX_IMAGE_PIXELS = 40_000_000
#: formats we decode; anything else is rejected before a decoder runs
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")  # JPEG covers MPO (multi-picture JPEG)
#: longest side of the stacked pair image
STACK_MAX_SIDE = 1024
#: how long a failed URL is not retried (disk, per URL) and how long a host that timed out or refused the
#: connection is skipped (memory, per process)
NEGATIVE_TTL_S = 15 * 60
HOST_DOWN_TTL_S = 60.0


class ImageError(ValueError):
    """An image cannot be used. The message is meant for the user (what is wrong and what to do)."""


# --- open / validate -------------------------------------------------------------------------------------------


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"


def _read_source(data: bytes | bytearray | memoryview | str | Path, max_bytes: int) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
    elif isinstance(data, (str, Path)):
        path = Path(data)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise ImageError(f"Image file not found: {path}") from None
        except OSError as err:
            raise ImageError(f"Cannot read image file {path}: {err.strerror or err}") from None
        if not path.is_file():
            raise ImageError(f"Not a file: {path}")
        if size > max_bytes:
            raise ImageError(
                f"The image file is {_mb(size)}; the limit is {_mb(max_bytes)}. Use a smaller or more compressed image."
            )
        raw = path.read_bytes()
    else:
        raise TypeError(f"open_image() takes bytes or a path, not {type(data).__name__}")
    if len(raw) > max_bytes:
        raise ImageError(
            f"The image file is {_mb(len(raw))}; the limit is {_mb(max_bytes)}. Use a smaller or more compressed image."
        )
    if not raw:
        raise ImageError("The image file is empty.")
    return raw


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any decoded mode -> 8-bit RGB; transparency is composited on white."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
        if mode == "RGB":
            return im
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        import numpy as np

        arr = np.asarray(im)
        if mode.startswith("I;16") or (mode == "I" and arr.size and arr.min() >= 0 and arr.max() <= 65535):
            arr8 = (arr.astype(np.uint32) >> 8).astype(np.uint8)
        else:  # 32-bit int or float: stretch the actual range to 0..255
            arr = arr.astype(np.float64)
            lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 1.0)
            arr8 = ((arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)).clip(0, 255).astype(np.uint8)
        return Image.fromarray(arr8, mode="L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode in ("L", "RGB") and "transparency" in im.info):
        rgba = im.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    try:
        return im.convert("RGB")  # 1, L, CMYK, YCbCr, LAB, HSV, I;16 variants...
    except (ValueError, OSError) as err:
        raise ImageError(f"Unsupported image colour mode {mode!r}: {err}") from None


def open_image(
    data: bytes | str | Path, *, max_bytes: int = MAX_IMAGE_BYTES, max_pixels: int = MAX_IMAGE_PIXELS
) -> Image.Image:
    """Open untrusted image data (bytes or a file path) and return a fully loaded RGB image.

    Raises :class:`ImageError` with a user-facing message for: missing/empty files, files over ``max_bytes``,
    data that is not an image in one of :data:`ALLOWED_FORMATS`, images over ``max_pixels`` (checked from the
    header before decoding) and corrupt or truncated files.
    """
    raw = _read_source(data, max_bytes)
    try:
        im = Image.open(io.BytesIO(raw), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError:
        raise ImageError(
            f"The image is too large (over {max_pixels / 1e6:.0f} megapixels); it may be a decompression bomb."
        ) from None
    except UnidentifiedImageError:
        raise ImageError("This file is not an image we can read. Use PNG, JPEG, WebP, GIF, BMP or TIFF.") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"The image file is corrupt: {err}") from None
    with im:
        width, height = im.size
        if width <= 0 or height <= 0:
            raise ImageError("The image has no pixels.")
        if width * height > max_pixels:
            raise ImageError(
                f"The image is {width}×{height} = {width * height / 1e6:.1f} megapixels; the limit is "
                f"{max_pixels / 1e6:.0f} megapixels. Use a smaller image."
            )
        try:
            im.load()  # animated GIF/WebP/APNG, multi-page TIFF: Image.open is positioned on the first frame
            try:
                oriented = ImageOps.exif_transpose(im) or im  # a transposed copy when EXIF asks for it
            except Exception as err:  # malformed EXIF in an untrusted file: keep the pixels as stored
                log.debug("ignoring unreadable EXIF orientation: %s", err)
                oriented = im
            rgb = _to_rgb(oriented)
            if rgb is im:
                rgb = im.copy()
        except Image.DecompressionBombError:
            raise ImageError("The image is too large; it may be a decompression bomb.") from None
        except ImageError:
            raise
        except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as err:
            raise ImageError(f"The image file is corrupt or truncated ({err}).") from None
    rgb.info.pop("exif", None)
    return rgb


# --- decoded images in memory: bounded by bytes ---------------------------------------------------------------


def image_nbytes(image: Image.Image) -> int:
    """Bytes the decoded pixels take (width × height × bytes per pixel)."""
    bands = len(image.getbands())
    per_band = 4 if image.mode in ("I", "F") else 2 if image.mode.startswith("I;16") else 1
    return image.width * image.height * bands * per_band


class ImageCache:
    """A least-recently-used cache whose entries together take at most ``max_bytes`` (each entry's size is given
    by the caller: the decoded image's bytes, :func:`image_nbytes`). An entry bigger than the whole budget is not
    kept. Thread-safe: one cache serves every browser session of a server process."""

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self.nbytes = 0
        self._items: OrderedDict[str, tuple[object, int]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str):
        with self._lock:
            hit = self._items.get(key)
            if hit is None:
                return None
            self._items.move_to_end(key)
            return hit[0]

    def put(self, key: str, value: object, nbytes: int) -> None:
        nbytes = max(0, int(nbytes))
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.nbytes -= old[1]
            if nbytes > self.max_bytes:
                return
            self._items[key] = (value, nbytes)
            self.nbytes += nbytes
            while self.nbytes > self.max_bytes:
                _, (_, size) = self._items.popitem(last=False)
                self.nbytes -= size

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.nbytes = 0


def thumbnail(image: Image.Image, side: int = 256) -> Image.Image:
    """A copy at most ``side`` pixels on its longer side (for showing an upload: the page keeps no full-size copy)."""
    small = image.copy()
    small.thumbnail((side, side))
    return small


# --- fetch with caches -----------------------------------------------------------------------------------------

_host_down: dict[str, tuple[float, str]] = {}
_host_lock = threading.Lock()


def _images_cache(cache_dir: str | Path | None) -> Path:
    if cache_dir is None:
        from mind_core.config import cache_dir as default_cache

        cache_dir = default_cache() / "images"
    path = Path(cache_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _url_key(url: str) -> str:
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:40]


def _recent_failure(fail_path: Path) -> str | None:
    try:
        rec = json.loads(fail_path.read_text("utf-8"))
        if time.time() - float(rec["at"]) < NEGATIVE_TTL_S:
            return f"{rec['reason']} (cached failure)"
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _record_failure(fail_path: Path, url: str, reason: str) -> None:
    try:
        write_bytes(fail_path, json.dumps({"url": url, "reason": reason, "at": time.time()}).encode(), durable=False)
    except OSError as err:  # a read-only cache must not break fetching
        log.debug("cannot write negative cache %s: %s", fail_path, err)


def clear_host_failures() -> None:
    """Forget the in-memory list of hosts that recently timed out (tests, or after the network came back)."""
    with _host_lock:
        _host_down.clear()


def fetch_image_with_reason(
    url: str, *, timeout: float = 2.0, cache_dir: str | Path | None = None, max_bytes: int = MAX_IMAGE_BYTES
) -> tuple[Image.Image | None, str | None]:
    """Like :func:`fetch_image` but also returns why it failed (``None`` on success)."""
    if not isinstance(url, str) or not url.strip():
        return None, "empty image URL"
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None, f"not an http(s) URL: {url[:80]}"
    folder = _images_cache(cache_dir)
    key = _url_key(url)
    img_path, fail_path = folder / f"{key}.img", folder / f"{key}.fail"

    if img_path.exists():
        try:
            return open_image(img_path, max_bytes=max_bytes), None
        except ImageError:
            img_path.unlink(missing_ok=True)  # a bad cache entry: fetch again
    cached = _recent_failure(fail_path)
    if cached:
        return None, cached
    host = parts.netloc.lower()
    with _host_lock:
        down = _host_down.get(host)
        if down and time.monotonic() - down[0] < HOST_DOWN_TTL_S:
            return None, f"host {host} unreachable shortly before ({down[1]})"

    import httpx

    reason: str | None = None
    host_failed = False
    try:
        with (
            httpx.Client(timeout=timeout, follow_redirects=True) as client,
            client.stream("GET", url, headers={"User-Agent": "mind-explorer/0.1"}) as resp,
        ):
            if resp.status_code != 200:
                reason = f"HTTP {resp.status_code}"
            else:
                declared = resp.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > max_bytes:
                    reason = f"image too large ({_mb(int(declared))})"
                else:
                    buf = bytearray()
                    for chunk in resp.iter_bytes():
                        buf.extend(chunk)
                        if len(buf) > max_bytes:
                            reason = f"image too large (over {_mb(max_bytes)})"
                            break
                    if reason is None:
                        data = bytes(buf)
    except httpx.TimeoutException:
        reason, host_failed = f"timed out after {timeout:g} s", True
    except httpx.HTTPError as err:  # connection refused, DNS failure, TLS, protocol errors
        reason, host_failed = f"{type(err).__name__}: {err}"[:200], True
    except Exception as err:  # never raise on network trouble
        reason = f"{type(err).__name__}: {err}"[:200]

    if reason is None:
        try:
            image = open_image(data, max_bytes=max_bytes)
        except ImageError as err:
            reason = f"not a usable image: {err}"
        else:
            try:
                write_bytes(img_path, data, durable=False)
                fail_path.unlink(missing_ok=True)
            except OSError as err:
                log.debug("cannot cache %s: %s", url, err)
            return image, None
    if host_failed:
        with _host_lock:
            _host_down[host] = (time.monotonic(), reason)
    _record_failure(fail_path, url, reason)
    return None, reason


def fetch_image(url: str, *, timeout: float = 2.0, cache_dir: str | Path | None = None) -> Image.Image | None:
    """Download (or read from the cache) one image as RGB; ``None`` when it cannot be had. Never raises on
    network errors. Failures are remembered for :data:`NEGATIVE_TTL_S` seconds."""
    return fetch_image_with_reason(url, timeout=timeout, cache_dir=cache_dir)[0]


def fetch_first_image(
    urls: Iterable[str] | None, *, timeout: float = 2.0, cache_dir: str | Path | None = None
) -> tuple[Image.Image | None, str | None]:
    """The first URL of ``urls`` that yields an image: ``(image, None)``; or ``(None, reason)`` when none does,
    the reason naming what went wrong for each URL tried."""
    reasons: list[str] = []
    for url in list(urls or []):
        image, reason = fetch_image_with_reason(url, timeout=timeout, cache_dir=cache_dir)
        if image is not None:
            return image, None
        reasons.append(f"{url}: {reason}")
    if not reasons:
        return None, "no image URL"
    return None, "; ".join(reasons)[:1000]


# --- compose ---------------------------------------------------------------------------------------------------


def placeholder_image(size: tuple[int, int] = (256, 256), text: str = "image unavailable") -> Image.Image:
    """A light-grey tile with a simple picture icon and ``text`` centred below it."""
    w, h = max(16, int(size[0])), max(16, int(size[1]))
    img = Image.new("RGB", (w, h), (232, 232, 232))
    draw = ImageDraw.Draw(img)
    border = max(1, min(w, h) // 128)
    draw.rectangle((0, 0, w - 1, h - 1), outline=(200, 200, 200), width=border)
    # icon: a framed landscape (sun + two hills), centred a little above the middle
    s = min(w, h) * 0.32
    cx, cy = w / 2, h / 2 - (s * 0.25 if text else 0)
    x0, y0, x1, y1 = cx - s / 2, cy - s * 0.38, cx + s / 2, cy + s * 0.38
    grey = (160, 160, 160)
    draw.rounded_rectangle((x0, y0, x1, y1), radius=max(2, s / 12), outline=grey, width=max(1, int(s / 22)))
    r = s * 0.08
    draw.ellipse((x1 - s * 0.3 - r, y0 + s * 0.18 - r, x1 - s * 0.3 + r, y0 + s * 0.18 + r), fill=grey)
    draw.polygon(
        [(x0 + s * 0.08, y1 - s * 0.08), (x0 + s * 0.35, y0 + s * 0.3), (x0 + s * 0.6, y1 - s * 0.08)], fill=grey
    )
    draw.polygon(
        [(x0 + s * 0.45, y1 - s * 0.08), (x0 + s * 0.68, y0 + s * 0.42), (x1 - s * 0.08, y1 - s * 0.08)],
        fill=(180, 180, 180),
    )
    if text:
        font_size = max(8, int(min(w, h) / 14))
        try:
            font = ImageFont.load_default(size=font_size)
        except (TypeError, OSError, ImportError):
            font = ImageFont.load_default()
        box = draw.textbbox((0, 0), text, font=font)
        tw = box[2] - box[0]
        draw.text(((w - tw) / 2 - box[0], y1 + s * 0.18 - box[1]), text, fill=(120, 120, 120), font=font)
    return img


def stack_pair(img_a: Image.Image, img_b: Image.Image, gap: int = 20, *, max_side: int = STACK_MAX_SIDE) -> Image.Image:
    """MIND's pair image: ``img_a`` above ``img_b`` on a black canvas, ``gap`` pixels apart, each centred
    horizontally. Both images are scaled by the same factor (never up) so the longest side of the result is at
    most ``max_side``; the gap stays ``gap`` pixels."""
    a, b = _to_rgb(img_a), _to_rgb(img_b)
    (wa, ha), (wb, hb) = a.size, b.size
    scale = min(1.0, max_side / max(wa, wb), (max_side - gap) / max(1, ha + hb))
    if scale < 1.0:
        a = a.resize((max(1, round(wa * scale)), max(1, round(ha * scale))), Image.Resampling.LANCZOS)
        b = b.resize((max(1, round(wb * scale)), max(1, round(hb * scale))), Image.Resampling.LANCZOS)
        (wa, ha), (wb, hb) = a.size, b.size
    width = max(wa, wb)
    canvas = Image.new("RGB", (width, ha + gap + hb), (0, 0, 0))
    canvas.paste(a, ((width - wa) // 2, 0))
    canvas.paste(b, ((width - wb) // 2, ha + gap))
    return canvas


def pad_to_square(img: Image.Image, fill: Sequence[float] | Sequence[int] = (0, 0, 0)) -> Image.Image:
    """Pad ``img`` to a square, centred, with ``fill``. ``fill`` may be 0-255 ints or a processor's
    ``image_mean`` in 0-1 floats (as LLaVA-1.5's ``expand2square`` uses)."""
    vals = [float(v) for v in fill][:3]
    if len(vals) == 1:
        vals *= 3
    if all(0.0 <= v <= 1.0 for v in vals) and any(isinstance(v, float) and not float(v).is_integer() for v in fill):
        vals = [v * 255.0 for v in vals]
    colour = tuple(round(min(255.0, max(0.0, v))) for v in vals)
    rgb = _to_rgb(img)
    w, h = rgb.size
    if w == h:
        return rgb.copy()
    side = max(w, h)
    canvas = Image.new("RGB", (side, side), colour)
    canvas.paste(rgb, ((side - w) // 2, (side - h) // 2))
    return canvas
