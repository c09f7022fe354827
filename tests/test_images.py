"""mind_core.images: validation of untrusted images, normalisation, fetching with caches, pair stacking."""

from __future__ import annotations

import io
import struct
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from mind_core import images
from mind_core.images import (
    ImageError,
    fetch_first_image,
    fetch_image,
    open_image,
    pad_to_square,
    placeholder_image,
    stack_pair,
)


def _bytes(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _png_with_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height but whose pixel data is a few bytes: decoding it would fail, so an
    error about the size proves the check ran on the header, before decoding."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")
    )


# --- open_image: bad input -------------------------------------------------------------------------------------


def test_rejects_non_image_bytes():
    with pytest.raises(ImageError, match="not an image"):
        open_image(b"%PDF-1.4 this is not a picture")


def test_rejects_empty_and_missing(tmp_path):
    with pytest.raises(ImageError, match="empty"):
        open_image(b"")
    with pytest.raises(ImageError, match="not found"):
        open_image(tmp_path / "nope.png")


def test_rejects_oversize_file_from_bytes_and_path(tmp_path):
    data = _bytes(Image.new("RGB", (64, 64), "red"), "PNG")
    with pytest.raises(ImageError, match="limit is"):
        open_image(data, max_bytes=len(data) - 1)
    path = tmp_path / "big.png"
    path.write_bytes(data)
    with pytest.raises(ImageError, match="limit is"):
        open_image(str(path), max_bytes=len(data) - 1)
    assert open_image(path, max_bytes=len(data)).size == (64, 64)


def test_default_byte_limit_is_20_mb():
    with pytest.raises(ImageError, match="20.0 MB"):
        open_image(b"\x89PNG" + b"\x00" * (20 * 1024 * 1024))


def test_decompression_bomb_rejected_from_header_before_decoding():
    bomb = _png_with_header(8000, 6000)  # 48 MP > 40 MP default
    with pytest.raises(ImageError, match="megapixels"):
        open_image(bomb)
    huge = _png_with_header(20000, 20000)  # 400 MP: Pillow's own bomb error, turned into an ImageError
    with pytest.raises(ImageError, match="megapixels|decompression bomb"):
        open_image(huge)
    with pytest.raises(ImageError, match="megapixels"):
        open_image(_bytes(Image.new("RGB", (100, 100)), "PNG"), max_pixels=9_999)


def test_corrupt_and_truncated_files():
    jpeg = _bytes(Image.effect_noise((200, 200), 64).convert("RGB"), "JPEG", quality=90)
    with pytest.raises(ImageError, match="corrupt|truncated"):
        open_image(jpeg[: len(jpeg) // 2])
    png = _bytes(Image.effect_noise((64, 64), 64), "PNG")
    damaged = png[:40] + bytes(b ^ 0xFF for b in png[40:80]) + png[80:]
    with pytest.raises(ImageError):
        open_image(damaged)


def test_disallowed_format_rejected():
    ico = _bytes(Image.new("RGB", (16, 16), "red"), "ICO")
    with pytest.raises(ImageError, match="not an image"):
        open_image(ico)


# --- open_image: normalisation ---------------------------------------------------------------------------------


def test_cmyk_becomes_rgb():
    cmyk = Image.new("CMYK", (10, 10), (0, 255, 255, 0))  # pure red in CMYK
    out = open_image(_bytes(cmyk, "JPEG", quality=95))
    assert out.mode == "RGB"
    r, g, b = out.getpixel((5, 5))
    assert r > 200 and g < 60 and b < 60


def test_palette_with_transparency_composited_on_white():
    p = Image.new("P", (10, 10), 0)
    p.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    for x in range(5):
        for y in range(10):
            p.putpixel((x, y), 1)
    out = open_image(_bytes(p, "PNG", transparency=0))
    assert out.mode == "RGB"
    assert out.getpixel((8, 5)) == (255, 255, 255)  # transparent red -> white
    assert out.getpixel((1, 5)) == (0, 0, 255)
    plain = open_image(_bytes(p, "GIF"))  # palette without transparency keeps its colours
    assert plain.getpixel((8, 5)) == (255, 0, 0)


def test_alpha_composited_on_white():
    rgba = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    rgba.putpixel((0, 0), (0, 0, 0, 255))
    rgba.putpixel((1, 0), (0, 0, 0, 128))
    out = open_image(_bytes(rgba, "PNG"))
    assert out.mode == "RGB"
    assert out.getpixel((5, 5)) == (255, 255, 255)
    assert out.getpixel((0, 0)) == (0, 0, 0)
    assert 120 <= out.getpixel((1, 0))[0] <= 135
    la = open_image(_bytes(Image.new("LA", (4, 4), (0, 0)), "PNG"))
    assert la.getpixel((0, 0)) == (255, 255, 255)
    webp = open_image(_bytes(rgba, "WEBP", lossless=True))
    assert webp.mode == "RGB" and webp.getpixel((5, 5)) == (255, 255, 255)


def test_16_bit_grayscale_scaled_to_8_bit():
    im = Image.new("I;16", (4, 1))
    for x, v in enumerate((0, 256, 32768, 65535)):
        im.putpixel((x, 0), v)
    out = open_image(_bytes(im, "PNG"))
    assert out.mode == "RGB"
    assert [out.getpixel((x, 0))[0] for x in range(4)] == [0, 1, 128, 255]


def test_animated_gif_gives_first_frame():
    frames = [Image.new("RGB", (8, 8), c) for c in ("red", "blue", "green")]
    data = _bytes(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 3
    out = open_image(data)
    r, g, b = out.getpixel((4, 4))
    assert r > 200 and g < 50 and b < 50


def test_exif_orientation_applied():
    im = Image.new("RGB", (20, 10), "white")
    im.paste((255, 0, 0), (0, 0, 5, 10))  # red stripe on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    out = open_image(_bytes(im, "JPEG", exif=exif, quality=95))
    assert out.size == (10, 20)
    assert out.getpixel((5, 1))[0] > 200 and out.getpixel((5, 1))[1] < 80  # the stripe is now at the top


def test_accepts_path_and_str(tmp_path):
    path = tmp_path / "a.png"
    Image.new("L", (3, 2), 77).save(path)
    for src in (path, str(path)):
        out = open_image(src)
        assert out.mode == "RGB" and out.size == (3, 2) and out.getpixel((0, 0)) == (77, 77, 77)


# --- compose ---------------------------------------------------------------------------------------------------


def test_stack_pair_layout():
    a = Image.new("RGB", (100, 50), (255, 0, 0))
    b = Image.new("RGB", (60, 40), (0, 0, 255))
    out = stack_pair(a, b)
    assert out.size == (100, 50 + 20 + 40)
    assert out.getpixel((50, 25)) == (255, 0, 0)
    assert all(out.getpixel((50, y)) == (0, 0, 0) for y in range(50, 70))  # the 20 px black gap
    assert out.getpixel((19, 90)) == (0, 0, 0) and out.getpixel((20, 90)) == (0, 0, 255)  # B centred
    assert out.getpixel((79, 90)) == (0, 0, 255) and out.getpixel((80, 90)) == (0, 0, 0)


def test_stack_pair_caps_size_and_keeps_gap():
    a = Image.new("RGB", (3000, 1000), (255, 0, 0))
    b = Image.new("RGB", (1000, 1000), (0, 255, 0))
    out = stack_pair(a, b, max_side=1024)
    assert max(out.size) <= 1024
    w, h = out.size
    assert abs(w / 3000 - (h - 20) / 2000) < 0.01  # same scale for both, aspect kept
    ha = round(1000 * w / 3000)
    assert all(out.getpixel((w // 2, y)) == (0, 0, 0) for y in range(ha + 1, ha + 19))


def test_pad_to_square_with_processor_mean_or_ints():
    im = Image.new("RGB", (100, 50), (255, 0, 0))
    out = pad_to_square(im, (0.48145466, 0.4578275, 0.40821073))  # CLIP image_mean
    assert out.size == (100, 100)
    assert out.getpixel((0, 0)) == (123, 117, 104)
    assert out.getpixel((50, 50)) == (255, 0, 0)
    out2 = pad_to_square(Image.new("RGB", (30, 60)), (10, 20, 30))
    assert out2.size == (60, 60) and out2.getpixel((0, 0)) == (10, 20, 30)


def test_placeholder_is_grey_with_content():
    ph = placeholder_image((300, 200))
    assert ph.size == (300, 200) and ph.mode == "RGB"
    colours = ph.getcolors(maxcolors=100000)
    assert colours is not None
    assert max(colours)[1] == (232, 232, 232)  # mostly the light grey background
    assert len(colours) > 3  # the icon and the text are drawn
    assert all(abs(c[0] - c[1]) < 10 and abs(c[1] - c[2]) < 10 for _, c in colours)  # greys only


# --- fetch -----------------------------------------------------------------------------------------------------


class _Server:
    def __init__(self):
        self.hits: dict[str, int] = {}
        png = _bytes(Image.new("RGB", (12, 8), (0, 128, 0)), "PNG")
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                server.hits[self.path] = server.hits.get(self.path, 0) + 1
                if self.path.startswith("/slow"):
                    time.sleep(1.5)
                if self.path.startswith("/good") or self.path.startswith("/slow"):
                    body, code = png, 200
                elif self.path == "/text":
                    body, code = b"hello, not an image", 200
                else:
                    body, code = b"not found", 404
                try:
                    self.send_response(code)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture()
def server():
    images.clear_host_failures()
    srv = _Server()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()
    images.clear_host_failures()


def test_fetch_caches_on_disk(server, tmp_path):
    url = server.base + "/good.png"
    im = fetch_image(url, cache_dir=tmp_path)
    assert im is not None and im.size == (12, 8)
    again = fetch_image(url, cache_dir=tmp_path)
    assert again is not None and again.getpixel((0, 0)) == (0, 128, 0)
    assert server.hits["/good.png"] == 1  # the second call came from the cache
    assert len(list(tmp_path.glob("*.img"))) == 1


def test_fetch_failures_are_negatively_cached_with_reason(server, tmp_path):
    url = server.base + "/missing.jpg"
    assert fetch_image(url, cache_dir=tmp_path) is None
    img, reason = fetch_first_image([url], cache_dir=tmp_path)
    assert img is None and "HTTP 404" in reason and "cached" in reason
    assert server.hits["/missing.jpg"] == 1
    img, reason = fetch_first_image([server.base + "/text"], cache_dir=tmp_path)
    assert img is None and "not a usable image" in reason


def test_fetch_first_image_falls_through_to_a_good_url(server, tmp_path):
    img, reason = fetch_first_image(
        [server.base + "/nope1", "ftp://x/y.png", server.base + "/good2.png"], cache_dir=tmp_path
    )
    assert img is not None and reason is None
    assert fetch_first_image([], cache_dir=tmp_path) == (None, "no image URL")


def test_timeouts_do_not_raise_and_mark_the_host(server, tmp_path):
    t0 = time.monotonic()
    img, reason = fetch_first_image([server.base + "/slow1.png"], timeout=0.3, cache_dir=tmp_path)
    assert img is None and "timed out" in reason
    # another URL on the same host does not wait again
    t1 = time.monotonic()
    img2, reason2 = fetch_first_image([server.base + "/good-other.png"], timeout=0.3, cache_dir=tmp_path)
    assert img2 is None and "unreachable shortly before" in reason2
    assert time.monotonic() - t1 < 0.2
    assert time.monotonic() - t0 < 3


def test_connection_refused_returns_none(tmp_path):
    images.clear_host_failures()
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    img, reason = fetch_first_image([f"http://127.0.0.1:{port}/a.png"], timeout=1.0, cache_dir=tmp_path)
    assert img is None and reason
    images.clear_host_failures()


# --- issue 16 (4): decoded images are cached by bytes, not by count --------------------------------------------


def test_the_image_cache_evicts_by_byte_budget():
    from mind_core.images import ImageCache, image_nbytes

    one = Image.new("RGB", (100, 100))  # 30,000 bytes decoded
    assert image_nbytes(one) == 30_000
    cache = ImageCache(max_bytes=100_000)
    for key in "abc":
        cache.put(key, one, image_nbytes(one))
    assert cache.get("a") is one  # a is now the most recent
    cache.put("d", one, image_nbytes(one))  # 120,000 > 100,000: the least recent (b) goes
    assert cache.get("b") is None and cache.get("a") is one and cache.get("d") is one
    assert cache.nbytes <= 100_000 and len(cache) == 3
    cache.put("huge", Image.new("RGB", (300, 300)), 270_000)  # bigger than the whole budget: not kept
    assert cache.get("huge") is None and cache.nbytes <= 100_000


def test_uploads_are_cached_within_a_byte_budget():
    from mind_core.distill import inputs

    def png(i: int) -> bytes:
        buf = io.BytesIO()
        Image.new("RGB", (2500, 2500), (i, 7, 99)).save(buf, "PNG", compress_level=1)  # small file, 18.75 MB decoded
        return buf.getvalue()

    cache = inputs._upload_cache
    for i in range(16):  # 300 MB decoded if everything were kept
        assert inputs.read_upload(f"{i}.png", png(i)).ok
    assert cache.nbytes <= cache.max_bytes <= 512 * 1024 * 1024
