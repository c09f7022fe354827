"""Visual facts for a model that cannot see pixels: OCR text and named dominant colours of each image.

* OCR text (``rapidocr-onnxruntime``, which ships its own ONNX models; imported lazily; if it is missing or fails
  the facts say so and generation goes on with colours only);
* 3-5 dominant colours with names (PIL median-cut quantisation + a small named-colour table), the background
  colour (read off the image border) reported apart.

A stacked pair image (A above B on a black canvas, see ``mind_core.images``) is split at its black gap so facts are
given per product. :func:`describe_images` writes the facts as the text block the offline backend puts into the
prompt ("Visible text in the image: ...; dominant colours: ...").
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from PIL import Image

log = logging.getLogger(__name__)

# --- visual facts -----------------------------------------------------------------------------------------------

#: a small named-colour table (sRGB)
NAMED_COLOURS: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0),
    "dark grey": (70, 70, 70),
    "grey": (128, 128, 128),
    "light grey": (195, 195, 195),
    "white": (255, 255, 255),
    "red": (200, 30, 35),
    "dark red": (120, 15, 25),
    "pink": (240, 150, 180),
    "orange": (245, 130, 30),
    "brown": (120, 70, 35),
    "beige": (220, 200, 160),
    "yellow": (240, 215, 40),
    "olive": (120, 120, 40),
    "green": (50, 150, 60),
    "dark green": (20, 80, 40),
    "teal": (0, 128, 128),
    "light blue": (135, 190, 235),
    "blue": (35, 80, 200),
    "navy": (20, 30, 85),
    "purple": (115, 55, 150),
    "cyan": (40, 200, 215),
    "magenta": (210, 40, 160),
}


def colour_name(rgb: Sequence[int]) -> str:
    """The nearest named colour (weighted RGB distance, closer to perceived difference than plain RGB)."""
    r, g, b = (int(c) for c in rgb[:3])
    best, best_d = "grey", float("inf")
    for name, (R, G, B) in NAMED_COLOURS.items():
        rm = (r + R) / 2
        d = (2 + rm / 256) * (r - R) ** 2 + 4 * (g - G) ** 2 + (2 + (255 - rm) / 256) * (b - B) ** 2
        if d < best_d:
            best, best_d = name, d
    return best


def dominant_colours(
    image: Image.Image, k: int = 5, min_share: float = 0.04
) -> tuple[list[tuple[str, float]], str | None]:
    """``([(name, share), ...], background)``: up to ``k`` named colours by pixel share (background excluded
    when the border is one colour), and the background colour name or None."""
    img = image.convert("RGB")
    img.thumbnail((96, 96))
    w, h = img.size
    border = [img.getpixel((x, y)) for x in range(w) for y in (0, h - 1)] + [
        img.getpixel((x, y)) for y in range(h) for x in (0, w - 1)
    ]
    border_names: dict[str, int] = {}
    for px in border:
        n = colour_name(px)
        border_names[n] = border_names.get(n, 0) + 1
    bg_name, bg_count = max(border_names.items(), key=lambda kv: kv[1])
    background = bg_name if bg_count >= 0.7 * len(border) else None
    quant = img.quantize(colors=12, method=Image.Quantize.MEDIANCUT)
    palette = quant.getpalette() or []
    shares: dict[str, float] = {}
    total = w * h
    for count, idx in quant.getcolors(maxcolors=256) or []:
        name = colour_name(palette[idx * 3 : idx * 3 + 3])
        shares[name] = shares.get(name, 0.0) + count / total
    ranked = sorted(shares.items(), key=lambda kv: -kv[1])
    fg = [(n, s) for n, s in ranked if n != background]
    fg_total = sum(s for _, s in fg)
    if fg and fg_total >= 0.05:
        ranked = [(n, s / fg_total) for n, s in fg]
    out = [(n, round(s, 3)) for n, s in ranked if s >= min_share][:k]
    return (out or [(n, round(s, 3)) for n, s in ranked[:1]]), background


_OCR_LOCK = threading.Lock()
_OCR_ENGINE: Any = None
_OCR_ERROR: str | None = None


def _ocr_engine() -> Any:
    global _OCR_ENGINE, _OCR_ERROR
    with _OCR_LOCK:
        if _OCR_ENGINE is None and _OCR_ERROR is None:
            try:
                logging.getLogger("RapidOCR").setLevel(logging.WARNING)
                from rapidocr_onnxruntime import RapidOCR

                _OCR_ENGINE = RapidOCR()
            except Exception as err:  # missing package, broken onnxruntime, ...
                _OCR_ERROR = f"{type(err).__name__}: {err}"
                log.warning("OCR unavailable (%s); the offline backend goes on with colours only", _OCR_ERROR)
        return _OCR_ENGINE


def ocr_text(image: Image.Image, min_score: float = 0.5, max_chars: int = 200) -> tuple[str, str | None]:
    """``(text, error)``: the text OCR reads in ``image``, top to bottom, deduplicated; error when OCR failed."""
    engine = _ocr_engine()
    if engine is None:
        return "", _OCR_ERROR
    import numpy as np

    try:
        rgb = image.convert("RGB")
        with _OCR_LOCK:  # onnxruntime sessions are shared; keep calls serial
            result, _ = engine(np.asarray(rgb)[:, :, ::-1].copy())  # RapidOCR expects BGR like OpenCV
    except Exception as err:
        return "", f"{type(err).__name__}: {err}"
    items = []
    for box, text, score in result or []:
        if float(score) >= min_score and str(text).strip():
            top = min(p[1] for p in box)
            left = min(p[0] for p in box)
            items.append((round(top / 10), left, str(text).strip()))
    seen, words = set(), []
    for _, _, text in sorted(items):
        if text.lower() not in seen:
            seen.add(text.lower())
            words.append(text)
    joined = " | ".join(words)
    return (joined[:max_chars].rsplit(" ", 1)[0] + " ..." if len(joined) > max_chars else joined), None


def split_stacked(image: Image.Image, min_gap: int = 12, black: int = 12) -> list[Image.Image]:
    """Split a stacked pair image at its widest full-width black band (>= ``min_gap`` rows, with content above
    and below) and crop each part to its non-black content; one part when there is no such band."""
    gray = image.convert("L")
    small_w = min(gray.width, 256)
    probe = gray.resize((small_w, gray.height)) if gray.width > small_w else gray
    w, h = probe.size
    data = probe.tobytes()
    row_black = [max(data[y * w : (y + 1) * w]) <= black for y in range(h)]
    best = None
    y = 0
    while y < h:
        if row_black[y]:
            start = y
            while y < h and row_black[y]:
                y += 1
            if start > 0 and y < h and y - start >= min_gap and (best is None or y - start > best[1] - best[0]):
                best = (start, y)
        else:
            y += 1
    parts = (
        [image]
        if best is None
        else [image.crop((0, 0, image.width, best[0])), image.crop((0, best[1], image.width, image.height))]
    )
    cropped = []
    for part in parts:
        bbox = part.convert("L").point(lambda v: 255 if v > black else 0).getbbox()
        cropped.append(part.crop(bbox) if bbox else part)
    return cropped


def visual_facts(image: Image.Image, ocr: bool = True) -> dict[str, Any]:
    """OCR text, dominant colours and background of one image."""
    colours, background = dominant_colours(image)
    facts: dict[str, Any] = {"colours": colours, "background": background, "text": "", "size": image.size}
    if ocr:
        facts["text"], err = ocr_text(image)
        if err:
            facts["ocr_error"] = err
    return facts


def facts_sentence(facts: dict[str, Any]) -> str:
    text = facts.get("text") or ""
    seen = f'"{text}"' if text else ("none found" if "ocr_error" not in facts else "not available")
    colours = ", ".join(n for n, _ in facts["colours"]) or "unknown"
    bg = f" on a {facts['background']} background" if facts.get("background") else ""
    return f"Visible text in the image: {seen}; dominant colours: {colours}{bg}."


def describe_images(images: Sequence[Image.Image], ocr: bool = True) -> tuple[str, list[dict[str, Any]]]:
    """The text block that replaces the images in the prompt, and the facts behind it."""
    if not images:
        return "", []
    lines = ["You cannot see the image(s); software extracted these facts from them:"]
    all_facts: list[dict[str, Any]] = []
    for n, image in enumerate(images, 1):
        parts = split_stacked(image) if len(images) == 1 else [image]
        if len(parts) == 2:
            labels = ["Upper part of the image (product A)", "Lower part of the image (product B)"]
        else:
            labels = [f"Image {n}" if len(images) > 1 else "The image"]
        for label, part in zip(labels, parts):
            facts = visual_facts(part, ocr=ocr)
            facts["label"] = label
            all_facts.append(facts)
            lines.append(f"- {label}: {facts_sentence(facts)}")
    return "\n".join(lines), all_facts
