"""Image file checks used by every reader: present, readable, of the size the annotation claims.

Modes (``check_images``): ``none`` (trust the annotation, touch no file), ``header`` (default: the file
exists and PIL reads its header; catches missing and non-image files and size mismatches), ``decode``
(also decodes the pixels; catches truncated JPEGs, at the cost of a full decode per image).
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError

from .errors import DataError

__all__ = ["CHECK_MODES", "check_image"]

CHECK_MODES = ("none", "header", "decode")


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
            size = img.size
            if mode == "decode":
                img.load()
    except UnidentifiedImageError as e:
        raise DataError(f"{where}: cannot read image {path}: not a recognised image file") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{where}: cannot decode image {path}: {e}") from e
    if width is not None and height is not None and size != (width, height):
        raise DataError(
            f"{where}: image {path} is {size[0]}x{size[1]} but the annotation says {width}x{height}"
        )
    return size
