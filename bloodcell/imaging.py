"""Safe image decoding and the one preprocessing function every code path uses.

Uploaded and scanned files are untrusted: a file may be truncated, not an
image at all, a decompression bomb, a 16-bit or CMYK scan, or a phone photo
whose orientation lives in EXIF. `read_image` turns all of them into either
an 8-bit RGB image or an `ImageReadError` with a one-sentence reason.
`to_model_input` is the only resize used by training, evaluation, the CLI and
the app, so the same file always gives the same model input.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from bloodcell.errors import ImageReadError

ImageSource = Union[str, os.PathLike, bytes, BinaryIO]

# A 50-megapixel limit admits any phone or microscope camera frame but stops a
# decompression bomb before its pixels are allocated (Pillow's own check only
# warns below twice its limit).
MAX_IMAGE_PIXELS = 50_000_000
MAX_FILE_BYTES = 50 * 1024 * 1024
MIN_IMAGE_SIDE = 8
RESAMPLE = Image.Resampling.BILINEAR

Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS


def _open_bytes(source: ImageSource) -> bytes:
    if isinstance(source, bytes):
        data = source
    elif hasattr(source, "read"):
        data = source.read(MAX_FILE_BYTES + 1)
    else:
        path = Path(source)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise ImageReadError(f"cannot read {path.name}: {exc.strerror or exc}") from None
        if size > MAX_FILE_BYTES:
            raise ImageReadError(
                f"file is {size / 2**20:.0f} MB; the limit is {MAX_FILE_BYTES // 2**20} MB"
            )
        data = path.read_bytes()
    if len(data) == 0:
        raise ImageReadError("file is empty (0 bytes)")
    if len(data) > MAX_FILE_BYTES:
        raise ImageReadError(f"file is larger than {MAX_FILE_BYTES // 2**20} MB")
    return data


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB, keeping the look of the image."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        # 16-bit and float scans: stretch the used range into 8 bits instead of
        # clipping everything above 255 to white.
        pixels = np.asarray(image, dtype=np.float64)
        low, high = float(np.nanmin(pixels)), float(np.nanmax(pixels))
        scale = 255.0 / (high - low) if high > low else 0.0
        grey = np.nan_to_num((pixels - low) * scale).clip(0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Transparent areas become white, the colour of an empty slide.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def read_image(source: ImageSource) -> Image.Image:
    """Decode `source` (path, bytes or binary file) into an 8-bit RGB image.

    Raises `ImageReadError` with a short reason for anything that is not a
    usable image. Animated or multi-page files use their first frame; EXIF
    orientation is applied.
    """
    data = _open_bytes(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise ImageReadError(
                    f"image is {width}x{height} pixels; the limit is "
                    f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels"
                )
            if min(width, height) < MIN_IMAGE_SIDE:
                raise ImageReadError(
                    f"image is {width}x{height} pixels; at least "
                    f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} is needed"
                )
            if getattr(image, "n_frames", 1) > 1:
                image.seek(0)
            image.load()
            image = ImageOps.exif_transpose(image) or image
            return _to_rgb(image)
    except ImageReadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageReadError(
            f"image is too large (over {MAX_IMAGE_PIXELS // 1_000_000} megapixels)"
        ) from None
    except UnidentifiedImageError:
        raise ImageReadError("not a readable image file (jpg, png, bmp or tif)") from None
    except (OSError, SyntaxError, ValueError, TypeError, EOFError, MemoryError,
            IndexError, KeyError, AttributeError, ZeroDivisionError, struct.error) as exc:
        reason = str(exc).strip().rstrip(".") or type(exc).__name__
        raise ImageReadError(f"image data is corrupt or truncated ({reason})") from None


# What a model sees: the whole field squeezed to a square, or the cell view
# (bloodcell/cellview.py: cropped to the white cell, stain-normalised,
# background removed), or the grey cell view (the same in grey levels, fine
# detail capped). A model's card names its view.
FULL_VIEW = "full"
CELL_VIEW = "cell"
GREY_CELL_VIEW = "cell-grey"
FILL_CELL_VIEW = "cell-fill"
CELL_VIEWS: tuple[str, ...] = (CELL_VIEW, GREY_CELL_VIEW, FILL_CELL_VIEW)
VIEWS: tuple[str, ...] = (FULL_VIEW, *CELL_VIEWS)
# What each view is, in words for the app.
VIEW_DESCRIPTIONS = {
    FULL_VIEW: "the whole image, resized",
    CELL_VIEW: "the cell view: cropped, stain-normalised, background removed",
    GREY_CELL_VIEW: "the grey cell view: cropped, stain-normalised, background removed, "
                    "then grey levels with fine detail capped",
    FILL_CELL_VIEW: "the filled cell view: cropped so the cell fills the frame whatever its size in the "
                    "photo, stain-normalised, background removed",
}


def to_model_input(image: Image.Image, size: int, view: str = FULL_VIEW, mask=None) -> np.ndarray:
    """The model input for `image`: float32 RGB pixels 0..255, `size` x `size`.

    Models hold their own scaling layer, so this is all the preprocessing
    there is; training, evaluation, the CLI and the app all call it. `mask`
    is the image's `bloodcell.cellmask.CellMask` when the caller has one.
    """
    if image.mode != "RGB":
        image = _to_rgb(image)
    if view in CELL_VIEWS:
        from bloodcell.cellview import view_and_mask

        return view_and_mask(image, size, view, mask)[0]
    if view != FULL_VIEW:
        raise ValueError(f"unknown view {view!r} (expected one of {VIEWS})")
    resized = image.resize((size, size), RESAMPLE)
    return np.asarray(resized, dtype=np.float32)


def load_model_input(source: ImageSource, size: int, view: str = FULL_VIEW) -> np.ndarray:
    """`read_image` then `to_model_input`: file to model-ready pixels."""
    return to_model_input(read_image(source), size, view)
