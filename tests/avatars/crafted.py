"""Crafted files for the upload tests: real images, and files built to fool a careless upload."""

import io
import struct
import zipfile
import zlib

from PIL import Image, PngImagePlugin

GPS_IFD = 0x8825
ORIENTATION = 0x0112
MAKE = 0x010F


def _image(width: int, height: int, mode: str = "RGB") -> Image.Image:
    """Left half red, right half blue: orientation changes are visible in the pixels."""
    image = Image.new(mode, (width, height), (255, 0, 0) if mode == "RGB" else (255, 0, 0, 255))
    image.paste((0, 0, 255) if mode == "RGB" else (0, 0, 255, 255), (width // 2, 0, width, height))
    return image


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def png(width: int = 64, height: int = 48) -> bytes:
    return encode(_image(width, height), "PNG")


def png_with_alpha(width: int = 64, height: int = 48) -> bytes:
    image = _image(width, height, "RGBA")
    image.putpixel((0, 0), (0, 0, 0, 0))
    return encode(image, "PNG")


def jpeg(width: int = 64, height: int = 48, **options: object) -> bytes:
    return encode(_image(width, height), "JPEG", quality=90, **options)


def webp(width: int = 64, height: int = 48) -> bytes:
    return encode(_image(width, height), "WEBP", quality=90)


def exif_with_gps(orientation: int = 1) -> Image.Exif:
    exif = Image.Exif()
    exif[MAKE] = "SpyCam 3000"
    exif[ORIENTATION] = orientation
    gps = exif.get_ifd(GPS_IFD)
    gps[1] = "N"  # GPSLatitudeRef
    gps[2] = (44.0, 25.0, 36.0)  # GPSLatitude: Bucharest
    gps[3] = "E"
    gps[4] = (26.0, 6.0, 0.0)
    return exif


XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><exif:GPSLatitude>44,25.6N</exif:GPSLatitude></x:xmpmeta>'


def jpeg_with_gps(width: int = 80, height: int = 40, orientation: int = 1) -> bytes:
    return jpeg(width, height, exif=exif_with_gps(orientation).tobytes(), xmp=XMP, comment=b"SpyCam 3000 comment")


def png_with_gps(width: int = 64, height: int = 48) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "SpyCam 3000 text chunk")
    return encode(_image(width, height), "PNG", exif=exif_with_gps().tobytes(), pnginfo=info)


def webp_with_gps(width: int = 64, height: int = 48) -> bytes:
    return encode(_image(width, height), "WEBP", exif=exif_with_gps().tobytes(), xmp=XMP)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_of_exact_size(size: int) -> bytes:
    """A valid PNG of exactly `size` bytes: a small image padded with a private ancillary chunk."""
    base = png(16, 16)
    iend = _chunk(b"IEND", b"")
    assert base.endswith(iend)
    padding = size - len(base) - 12  # a chunk costs 12 bytes around its data
    assert padding >= 0
    return base[: -len(iend)] + _chunk(b"prVt", b"\x00" * padding) + iend


def png_bomb(side: int = 20000) -> bytes:
    """A real side x side 1-bit PNG of all zeros: tiny on disk, 400 megapixels when decoded."""
    row = b"\x00" + b"\x00" * ((side + 7) // 8)  # filter byte + packed pixels
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def truncated_jpeg() -> bytes:
    data = jpeg(256, 256)
    return data[: len(data) // 2]


def jpeg_header_with_html() -> bytes:
    """Starts like a JPEG (magic bytes and a JFIF segment) and then is an HTML page."""
    jfif = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    return jfif + b"<html><body><script>alert(document.cookie)</script></body></html>" * 20


def zip_payload() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("payload.html", "<script>alert(1)</script>")
    return out.getvalue()


def jpeg_with_zip_appended() -> bytes:
    """A real JPEG followed by a ZIP archive: both readers accept it (a classic polyglot)."""
    return jpeg(64, 48) + zip_payload()
