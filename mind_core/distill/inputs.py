"""The two products of a live run: uploaded files checked and decoded, or products picked from a KB.

:func:`read_upload` turns an uploaded file into an RGB image or a user-facing error (and says when a CMYK /
palette / transparent / animated / 16-bit image was normalised); :func:`uploaded_product` and :func:`kb_product`
make the two :class:`~mind_core.schema.Product` s; :func:`check_pair` lists what stops a run (A == B included).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io as _io
from collections.abc import Sequence
from dataclasses import dataclass, field

from PIL import Image

from mind_core import images as img
from mind_core.schema import Product

#: upload formats offered by the page (``open_image`` reads more; the uploader only offers these)
UPLOAD_TYPES: tuple[str, ...] = ("png", "jpg", "jpeg", "webp")
MAX_UPLOADS = 4
UPLOAD_CATEGORY = "uploaded"


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
        with Image.open(_io.BytesIO(data), formats=img.ALLOWED_FORMATS) as im:
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


#: decoded uploads of every session of this process, bounded by their pixels' bytes (not by a count: a small PNG
#: can decode to 120 MB)
UPLOAD_CACHE_BYTES = 256 * 1024 * 1024
_upload_cache = img.ImageCache(UPLOAD_CACHE_BYTES)


def read_upload(
    name: str, data: bytes, *, max_bytes: int = img.MAX_IMAGE_BYTES, max_pixels: int = img.MAX_IMAGE_PIXELS
) -> Upload:
    """Validate and decode one uploaded file (cached by content hash within :data:`UPLOAD_CACHE_BYTES`, so reruns
    do not decode again)."""
    digest = hashlib.sha1(data).hexdigest()
    key = f"{digest}:{max_bytes}:{max_pixels}"
    hit = _upload_cache.get(key)
    if hit is not None:
        return dataclasses.replace(hit, name=name)
    try:
        image = img.open_image(data, max_bytes=max_bytes, max_pixels=max_pixels)
    except img.ImageError as err:
        up = Upload(name, error=str(err), digest=digest)
    else:
        up = Upload(name, image=image, note=_normalisation_note(data), digest=digest)
    _upload_cache.put(key, up, len(data) + (img.image_nbytes(up.image) if up.image is not None else 0))
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
