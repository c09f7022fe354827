"""Reading text files line by line (or record by record), plain or gzipped, with errors that name the file and
the line.

Bytes that are not UTF-8 do not stop a file: they are decoded with ``surrogateescape`` and the line (or CSV
record) that holds them is reported as a bad row on its own line number (:func:`bad_utf8`), so ``--skip-bad`` can
skip it. A damaged ``.gz`` stream stops the file with the last good line named.
"""

from __future__ import annotations

import gzip
import io
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from mind_core.schema import ValidationError

_SURROGATE = re.compile("[\udc80-\udcff]")


def open_text(path: Path, *, newline: str | None = None) -> io.TextIOBase:
    """A UTF-8 text stream of ``path`` (gunzipped for ``.gz``); undecodable bytes become surrogate escapes."""
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="surrogateescape", newline=newline)
    return path.open("r", encoding="utf-8", errors="surrogateescape", newline=newline)


def bad_utf8(text: str) -> str | None:
    """None for clean text; else a message naming the first byte that is not UTF-8 and where it is."""
    m = _SURROGATE.search(text)
    if m is None:
        return None
    return f"not UTF-8 text: byte 0x{ord(m.group()) - 0xDC00:02x} at character {m.start() + 1}"


def damaged(path: Path, lineno: int, err: BaseException) -> ValidationError:
    return ValidationError(
        f"unreadable after line {lineno} (a damaged or truncated .gz file?): {err}", path=str(path), line=None
    )


def iter_text_lines(
    path: Path, *, on_bad: Callable[[ValidationError], None] | None = None
) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, line) for every non-blank line of a UTF-8 text file, plain or gzipped.

    A line with bytes that are not UTF-8 raises ValidationError naming that line, or, when ``on_bad`` is given,
    is passed to it and skipped. An unopenable or damaged file raises ValidationError naming the file and the
    last good line."""
    try:
        fh = open_text(path)
    except OSError as err:
        raise ValidationError(f"cannot open: {err.strerror or err}", path=str(path)) from None
    with fh:
        lineno = 0
        while True:
            try:
                line = fh.readline()
            except (OSError, EOFError) as err:
                raise damaged(path, lineno, err) from None
            if not line:
                break
            lineno += 1
            if not line.strip():
                continue
            problem = bad_utf8(line)
            if problem:
                err = ValidationError(problem, path=str(path), line=lineno)
                if on_bad is None:
                    raise err
                on_bad(err)
                continue
            yield lineno, line
