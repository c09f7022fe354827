"""Reading text files line by line, plain or gzipped, with errors that name the file and the line."""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator
from pathlib import Path

from mind_core.schema import ValidationError


def open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="strict")
    return path.open("r", encoding="utf-8")


def iter_text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, line) for every non-blank line of a UTF-8 text file, plain or gzipped;
    an unopenable or damaged file raises ValidationError naming the file and the last good line."""
    try:
        fh = open_text(path)
    except OSError as err:
        raise ValidationError(f"cannot open: {err.strerror or err}", path=str(path)) from None
    with fh:
        lineno = 0
        while True:
            try:
                line = fh.readline()
            except (UnicodeDecodeError, OSError, EOFError) as err:
                raise ValidationError(
                    f"unreadable after line {lineno} (not UTF-8 text or a damaged .gz file): {err}", path=str(path)
                ) from None
            if not line:
                break
            lineno += 1
            if line.strip():
                yield lineno, line
