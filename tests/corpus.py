"""A corpus of bad and odd image files, drawn by the tests themselves.

Each entry: (file name, bytes, expectation). The expectation is "ok" when the
file is a usable image that must be classified, or a fragment of the error
message a user must see.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

from conftest import draw_cell, encode


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` x `height` pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + _png_chunk(b"IEND", b""))


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(draw_cell("monocyte", size=96).resize((120, 80)), "JPEG", exif=exif.tobytes())


def _animated_gif() -> bytes:
    frames = [draw_cell(label, size=64) for label in ("basophil", "myeloblast", "monocyte")]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buffer.getvalue()


def _multipage_tiff() -> bytes:
    frames = [draw_cell(label, size=64) for label in ("erythroblast", "seg_neutrophil")] * 3
    buffer = io.BytesIO()
    frames[0].save(buffer, "TIFF", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


def _palette_with_transparency() -> bytes:
    image = draw_cell("basophil", size=64).convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    return encode(image, "PNG", transparency=0)


def _sixteen_bit(fmt: str) -> bytes:
    grey = np.asarray(draw_cell("myeloblast", size=64).convert("L"), dtype=np.uint16) * 257
    return encode(Image.fromarray(grey), fmt)


def _float_tiff() -> bytes:
    grey = np.asarray(draw_cell("monocyte", size=64).convert("L"), dtype=np.float32) / 255.0
    return encode(Image.fromarray(grey, mode="F"), "TIFF")


def _bad_crc_png() -> bytes:
    data = bytearray(encode(draw_cell("basophil", size=64), "PNG"))
    data[-20] ^= 0xFF  # inside the last IDAT payload or its CRC
    return bytes(data)


def _zip_file() -> bytes:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("cell.txt", "not an image")
    return buffer.getvalue()


def build_corpus() -> list[tuple[str, bytes, str]]:
    cell = draw_cell("seg_neutrophil", size=96)
    jpeg = encode(cell, "JPEG")
    return [
        ("truncated.jpg", jpeg[: len(jpeg) // 3], "corrupt or truncated"),
        ("png_bomb.png", png_claiming(60_000, 60_000), "too large"),
        ("huge_dimensions.png", png_claiming(9_000, 9_000), "megapixels"),
        ("empty.jpg", b"", "empty"),
        ("page.html.jpg", b"<!doctype html><html><body><img src=x></body></html>", "not a readable image"),
        ("document.pdf.jpg", b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer\n%%EOF", "not a readable image"),
        ("drawing.svg.png", b'<svg xmlns="http://www.w3.org/2000/svg"><circle r="4"/></svg>', "not a readable image"),
        ("archive.zip.jpg", _zip_file(), "not a readable image"),
        ("random_bytes.png", np.random.default_rng(0).bytes(4096), "not a readable image"),
        ("one_pixel.png", encode(Image.new("RGB", (1, 1), (200, 100, 150))), "at least"),
        ("animated.gif.png", _animated_gif(), "ok"),
        ("cmyk.jpg", encode(cell.convert("CMYK"), "JPEG"), "ok"),
        ("sixteen_bit.png", _sixteen_bit("PNG"), "ok"),
        ("sixteen_bit.tif", _sixteen_bit("TIFF"), "ok"),
        ("float.tif", _float_tiff(), "ok"),
        ("palette_transparent.png", _palette_with_transparency(), "ok"),
        ("rgba.png", encode(cell.convert("RGBA"), "PNG"), "ok"),
        ("grey_alpha.png", encode(cell.convert("LA"), "PNG"), "ok"),
        ("greyscale.jpg", encode(cell.convert("L"), "JPEG"), "ok"),
        ("strip_10000x10.png", encode(Image.new("RGB", (10_000, 10), (230, 200, 190))), "ok"),
        ("exif_rotated.jpg", _exif_rotated(), "ok"),
        ("multipage.tif", _multipage_tiff(), "ok"),
        ("bitmap.bmp", encode(cell, "BMP"), "ok"),
        ("trailing_garbage.jpg", jpeg + b"\x00garbage" * 100, "ok"),
        ("bad_crc.png", _bad_crc_png(), "corrupt or truncated"),
        ("webp_named.jpg", encode(cell, "WEBP"), "ok"),
    ]
