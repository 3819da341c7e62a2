"""Image file checks used by every reader: present, readable, of the size the annotation claims.

Modes (``check_images``): ``none`` (trust the annotation, touch no file), ``header`` (default: the file
exists, PIL reads its header, and a JPEG or PNG ends with its end-of-image marker; catches missing,
non-image and truncated files and size mismatches, reading only the header and the last 4 KiB),
``decode`` (also decodes the pixels; catches corrupt data inside a complete file, at the cost of a
full decode per image: 1.6 ms against 0.12 ms for ``header`` per image of the shared test data).

The end marker: a JPEG's EOI ``FF D9`` must be in its last :data:`TAIL_BYTES` bytes (entropy-coded
data never holds ``FF D9``: a 0xFF byte there is followed by 0x00 or a restart marker, so a cut file
fails; a few bytes of padding after EOI pass), a PNG's ``IEND`` chunk likewise. Other formats:
header only.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError

from .errors import DataError

__all__ = ["CHECK_MODES", "check_image"]

CHECK_MODES = ("none", "header", "decode")
TAIL_BYTES = 4096
END_MARKERS = {"JPEG": b"\xff\xd9", "PNG": b"IEND"}


def _tail_problem(path: Path, fmt: str | None) -> str | None:
    marker = END_MARKERS.get(fmt or "")
    if marker is None:
        return None
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - TAIL_BYTES))
        tail = f.read()
    if marker not in tail:
        return f"image {path} is truncated: no {fmt} end-of-image marker in its last {TAIL_BYTES} bytes"
    return None


def check_image(
    path: Path,
    where: str,
    *,
    mode: str = "header",
    width: int | None = None,
    height: int | None = None,
) -> tuple[int, int] | None:
    """Check the image at ``path``; -> its (width, height), or None in mode ``none``.

    ``where`` prefixes every error (file and record). ``width``/``height`` (if given) must match the file.
    """
    if mode not in CHECK_MODES:
        raise ValueError(f"check_images must be one of {CHECK_MODES}, got {mode!r}")
    if mode == "none":
        return None
    if not path.is_file():
        raise DataError(f"{where}: image file not found: {path}")
    try:
        with Image.open(path) as img:
            size, fmt = img.size, img.format
            if mode == "decode":
                img.load()
    except UnidentifiedImageError as e:
        raise DataError(f"{where}: cannot read image {path}: not a recognised image file") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{where}: cannot decode image {path}: {e}") from e
    problem = _tail_problem(path, fmt) if mode == "header" else None
    if problem:
        raise DataError(f"{where}: {problem}")
    if width is not None and height is not None and size != (width, height):
        raise DataError(
            f"{where}: image {path} is {size[0]}x{size[1]} but the annotation says {width}x{height}"
        )
    return size
