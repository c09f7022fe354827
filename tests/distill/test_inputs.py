"""mind_core.distill.inputs: uploads checked and normalised, products from uploads or a KB, pair checks (and the
try page's KB product picker labels)."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image

from dashboard.presenters.products import product_choices
from mind_core.distill import inputs


def _bytes(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _png(color=(200, 40, 40), size=(64, 48)) -> bytes:
    return _bytes(Image.new("RGB", size, color), "PNG")


def _png_with_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (a decompression bomb's header) with almost no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")
    )


# --- uploads ---------------------------------------------------------------------------------------------------


def test_bad_uploads_get_user_messages():
    assert "not an image" in inputs.read_upload("notes.png", b"hello, I am text").error
    assert "corrupt" in inputs.read_upload("cut.png", _png()[:60]).error
    big = inputs.read_upload("big.png", b"\x89PNG" + b"\0" * (20 * 1024 * 1024 + 10))
    assert "limit is 20.0 MB" in big.error and big.image is None
    bomb = inputs.read_upload("bomb.png", _png_with_header(8000, 6000))  # 48 MP
    assert "megapixels" in bomb.error and "limit is 40" in bomb.error


def test_odd_images_are_normalised_and_say_so():
    cmyk = inputs.read_upload("c.jpg", _bytes(Image.new("CMYK", (40, 30), (0, 255, 255, 0)), "JPEG"))
    assert cmyk.ok and cmyk.image.mode == "RGB" and "CMYK" in cmyk.note
    pal = Image.new("P", (20, 20), 0)
    pal.putpalette([255, 0, 0] + [0, 0, 255] * 255)
    pal_up = inputs.read_upload("p.png", _bytes(pal, "PNG", transparency=0))
    assert pal_up.ok and pal_up.image.getpixel((5, 5)) == (255, 255, 255)  # transparent -> white
    assert "palette" in pal_up.note and "transparent" in pal_up.note
    rgba = inputs.read_upload("a.webp", _bytes(Image.new("RGBA", (20, 20), (0, 0, 0, 0)), "WEBP", lossless=True))
    assert rgba.ok and rgba.image.getpixel((1, 1)) == (255, 255, 255) and "transparent" in rgba.note
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    anim = inputs.read_upload("anim.gif", buf.getvalue())
    assert anim.ok and "3 frames" in anim.note and anim.image.getpixel((0, 0))[0] > 200
    assert inputs.read_upload("plain.png", _png()).note is None


def test_uploaded_product_validation_and_stable_ids():
    good, bad = inputs.read_upload("a.png", _png()), inputs.read_upload("x.png", b"nope")
    no_title = inputs.uploaded_product("A", "   ", "", [good])
    assert no_title.product is None and no_title.errors == ["Product A needs a title."]
    assert "at least one image" in inputs.uploaded_product("B", "Mug", "", []).errors[0]
    only_bad = inputs.uploaded_product("B", "Mug", "", [bad])
    assert only_bad.product is None and "no usable image" in only_bad.errors[0]
    mixed = inputs.uploaded_product("B", " Red   mug ", "", [bad, good])
    assert mixed.product is not None and mixed.product.title == "Red mug" and mixed.image is good.image
    assert mixed.warnings == [] and mixed.errors == []  # x.png's own message is on its Upload
    assert mixed.product.category == inputs.UPLOAD_CATEGORY and mixed.product.image_urls == []
    five = inputs.uploaded_product(
        "A", "Mug", "d", [inputs.read_upload(f"{i}.png", _png((i, 0, 0))) for i in range(5)], main=2
    )
    assert "only the first 4" in five.warnings[0] and five.image.getpixel((0, 0))[0] == 2
    # same title + images -> same id (re-saving replaces); another title -> another product
    assert inputs.upload_asin("red MUG", [good]) == mixed.product.asin
    assert inputs.upload_asin("Blue mug", [good]) != mixed.product.asin
    assert len(mixed.product.asin) == 10 and mixed.product.asin.startswith("U")


def test_check_pair_refuses_the_same_product_twice(sample_kb):
    good = inputs.read_upload("a.png", _png())
    a = inputs.uploaded_product("A", "Mug", "", [good])
    b = inputs.uploaded_product("B", "mug", "", [good])
    assert "same upload" in inputs.check_pair(a, b)[0]
    asin = sample_kb.products.index[0]
    picked_a, picked_b = inputs.kb_product(sample_kb, asin, "A"), inputs.kb_product(sample_kb, asin, "B")
    assert picked_a.product.title == sample_kb.products.loc[asin, "title"]
    assert f"same KB product ({asin})" in inputs.check_pair(picked_a, picked_b)[0]
    assert inputs.check_pair(a, picked_b) == []
    assert "Pick product B" in inputs.kb_product(sample_kb, None, "B").errors[0]
    assert "not in the loaded" in inputs.kb_product(sample_kb, "NOPE", "B").errors[0]
    choices = product_choices(sample_kb)
    assert len(choices) == len(sample_kb.products) and asin in choices.values()
    few = product_choices(sample_kb, "aviator", limit=10)  # a "big" KB: search by words first
    assert 0 < len(few) <= 50 and all("aviator" in k.lower() for k in few)
