"""Safe decoding: every odd input becomes RGB or a clear ImageReadError."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from bloodcell.errors import ImageReadError
from bloodcell.imaging import MAX_IMAGE_PIXELS, load_model_input, read_image, to_model_input
from conftest import draw_cell, encode


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims huge dimensions but carries almost no data (a bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_rgb_jpeg_round_trip():
    image = read_image(encode(draw_cell("monocyte"), "JPEG"))
    assert image.mode == "RGB" and image.size == (48, 48)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "L", "CMYK", "P", "1", "I;16", "I", "F"])
def test_odd_modes_become_rgb(mode):
    source = draw_cell("basophil").convert("RGBA" if mode in ("RGBA", "LA") else "RGB")
    if mode in ("I;16", "I", "F"):
        grey = np.asarray(source.convert("L"), dtype=np.uint16) * 200
        converted = Image.fromarray(grey.astype(np.uint16 if mode == "I;16" else np.int32 if mode == "I" else np.float32))
        fmt = "TIFF"
    else:
        converted = source.convert(mode)
        fmt = "TIFF" if mode in ("CMYK", "LA") else "PNG"
    image = read_image(encode(converted, fmt))
    assert image.mode == "RGB"
    assert image.size == (48, 48)


def test_sixteen_bit_keeps_contrast():
    ramp = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 10)  # up to ~41000
    image = read_image(encode(Image.fromarray(ramp), "PNG"))
    pixels = np.asarray(image)
    assert pixels.min() == 0 and pixels.max() == 255  # stretched, not clipped to white


def test_transparent_palette_png_is_composited_on_white():
    image = Image.new("P", (16, 16), 0)
    image.putpalette([0, 0, 0] * 256)
    image.info["transparency"] = 0
    assert np.asarray(read_image(encode(image, "PNG", transparency=0))).min() == 255


def test_exif_rotation_is_applied():
    wide = Image.new("RGB", (40, 20), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    rotated = read_image(encode(wide, "JPEG", exif=exif.tobytes()))
    assert rotated.size == (20, 40)


def test_animated_gif_uses_first_frame():
    frames = [Image.new("RGB", (16, 16), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    pixels = np.asarray(read_image(buffer.getvalue()))
    assert pixels[..., 0].mean() > 200 and pixels[..., 2].mean() < 50


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty"),
        (b"hello, I am a text file", "not a readable image"),
        (b"<html><body>not an image</body></html>", "not a readable image"),
        (b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n", "not a readable image"),
        (png_header_only(30_000, 30_000), "megapixels"),
        (encode(Image.new("RGB", (1, 1))), "at least"),
    ],
    ids=["empty", "text", "html", "pdf", "png-bomb", "1x1"],
)
def test_bad_inputs_raise_clear_errors(data, reason):
    with pytest.raises(ImageReadError, match=reason):
        read_image(data)


def test_truncated_jpeg_is_an_error():
    data = encode(draw_cell("myeloblast", size=200), "JPEG")
    with pytest.raises(ImageReadError, match="corrupt or truncated"):
        read_image(data[: len(data) // 3])


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(ImageReadError, match="cannot read"):
        read_image(tmp_path / "nope.jpg")


def test_pixel_limit_is_sane():
    assert 12_000_000 < MAX_IMAGE_PIXELS <= 100_000_000


def test_model_input_shape_and_range():
    pixels = to_model_input(draw_cell("erythroblast", size=60), 32)
    assert pixels.shape == (32, 32, 3) and pixels.dtype == np.float32
    assert 0 <= pixels.min() and pixels.max() <= 255


def test_same_input_from_path_bytes_and_file_object(tmp_path):
    data = encode(draw_cell("seg_neutrophil", size=70), "JPEG")
    path = tmp_path / "cell.jpg"
    path.write_bytes(data)
    from_path = load_model_input(path, 40)
    assert np.array_equal(from_path, load_model_input(data, 40))
    assert np.array_equal(from_path, load_model_input(io.BytesIO(data), 40))
