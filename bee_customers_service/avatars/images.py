"""What an uploaded file really is, the clean image we store instead, and the generated avatar.

An upload is trusted for nothing: its type comes from its magic bytes, confirmed by a full decode
with Pillow restricted to that one format; the filename and the declared content type are ignored.
The pixel size is checked from the header BEFORE any pixel is decoded, so a small file that
inflates to gigabytes (a decompression bomb) is refused without being expanded. What is stored is
a re-encoding of the pixels only: EXIF (GPS, camera serials), XMP, comments and any payload
appended to the file are gone; the EXIF orientation is applied to the pixels first.
"""

import colorsys
import hashlib
import html
import io
import uuid
import warnings
from dataclasses import dataclass

from PIL import Image, ImageFile, ImageOps, PngImagePlugin

from bee_customers_service.core.errors import DomainError, InvalidInput, UnsupportedMediaType
from bee_customers_service.customers.avatar_links import initials

# Pillow's limits, set explicitly rather than trusted to defaults:
# - truncated files are errors, never half-decoded images;
# - PNG text chunks (zTXt/iTXt can be zlib bombs of their own) are capped well below the defaults.
# MAX_IMAGE_PIXELS is set per call from the configured dimension (see `clean_avatar`).
ImageFile.LOAD_TRUNCATED_IMAGES = False
PngImagePlugin.MAX_TEXT_CHUNK = 256 * 1024
PngImagePlugin.MAX_TEXT_MEMORY = 1024 * 1024
# Images between MAX_IMAGE_PIXELS and twice that make Pillow warn (above twice it raises); every one
# of them has a side over the limit, so the dimension check right after opening refuses it anyway.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

JPEG_QUALITY = 85
WEBP_QUALITY = 85


@dataclass(frozen=True, slots=True)
class ImageFormat:
    pillow: str  # Pillow's format name
    ext: str
    content_type: str


JPEG = ImageFormat("JPEG", "jpg", "image/jpeg")
PNG = ImageFormat("PNG", "png", "image/png")
WEBP = ImageFormat("WEBP", "webp", "image/webp")
FORMATS_BY_EXT = {f.ext: f for f in (JPEG, PNG, WEBP)}


class NotAnAcceptedImage(UnsupportedMediaType):
    type_slug, title = "unsupported-image", "Unsupported image"


class ImageTooLarge(DomainError):
    status, type_slug, title = 422, "image-too-large", "Image too large"


def sniff(data: bytes) -> ImageFormat | None:
    """The format the file's magic bytes announce (JPEG, PNG or WebP), None for anything else."""
    if data.startswith(b"\xff\xd8\xff"):
        return JPEG
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return WEBP
    return None


@dataclass(frozen=True, slots=True)
class CleanImage:
    data: bytes
    format: ImageFormat
    width: int
    height: int

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def _normalise_mode(image: Image.Image, target: ImageFormat) -> Image.Image:
    """Few, well supported pixel modes: RGB(A) or L; JPEG has no alpha (flattened onto white)."""
    if _has_alpha(image):
        rgba = image.convert("RGBA")
        if target is not JPEG:
            return rgba
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode in ("L", "RGB"):
        return image
    if image.mode in ("1", "I;16", "I", "F"):
        return image.convert("L")
    return image.convert("RGB")  # P without transparency, CMYK, YCbCr, LAB, HSV


def _encode(image: Image.Image, target: ImageFormat, icc_profile: bytes | None) -> bytes:
    out = io.BytesIO()
    options: dict[str, object] = {}
    if icc_profile:
        options["icc_profile"] = icc_profile  # colour fidelity (Display P3 photos); no personal data
    if target is JPEG:
        image.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True, **options)
    elif target is PNG:
        image.save(out, "PNG", compress_level=6, **options)
    else:
        image.save(out, "WEBP", quality=WEBP_QUALITY, method=4, **options)
    return out.getvalue()


def clean_avatar(data: bytes, *, max_dimension: int) -> CleanImage:
    """Validate an upload and re-encode it. CPU-bound: call it off the event loop.

    Raises InvalidInput (empty, 422), NotAnAcceptedImage (415) or ImageTooLarge (422).
    """
    if not data:
        raise InvalidInput("file", "the file is empty")
    target = sniff(data)
    if target is None:
        raise NotAnAcceptedImage("The file is not a JPEG, PNG or WebP image.")
    Image.MAX_IMAGE_PIXELS = max_dimension * max_dimension
    too_large = ImageTooLarge(f"The image must be at most {max_dimension}x{max_dimension} pixels.")
    try:
        # Only the plugin the magic bytes named may read the file: a file cannot pass as one format
        # by its signature and be decoded by another plugin.
        with Image.open(io.BytesIO(data), formats=[target.pillow]) as opened:
            width, height = opened.size  # from the header: nothing decoded yet
            if width > max_dimension or height > max_dimension:
                raise too_large
            opened.load()  # the real decode: truncated or corrupt data fails here
            icc_profile = opened.info.get("icc_profile")
            image = ImageOps.exif_transpose(opened)  # orientation applied to the pixels
            image = _normalise_mode(image, target)
            image.info = {}  # nothing from the source travels into the new file
            encoded = _encode(image, target, icc_profile)
            out_width, out_height = image.size
    except DomainError:
        raise
    except Image.DecompressionBombError as exc:
        raise too_large from exc
    except Exception as exc:  # Pillow reports corrupt data with many exception types
        raise NotAnAcceptedImage(f"The file is not a valid {target.ext.upper()} image.") from exc
    return CleanImage(data=encoded, format=target, width=out_width, height=out_height)


# --- the generated avatar: initials on a colour derived from the customer id -------------------

SVG_SIZE = 128
WHITE_TEXT_MIN_CONTRAST = 4.5  # WCAG AA for normal text; our large text would need only 3


def _relative_luminance(rgb: tuple[int, int, int]) -> float:
    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(v) for v in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    """WCAG 2 contrast ratio between two sRGB colours (1..21)."""
    la, lb = sorted((_relative_luminance(a), _relative_luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def _hsl_to_rgb(hue: float, saturation: float, lightness: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hls_to_rgb(hue / 360, lightness, saturation)
    return round(r * 255), round(g * 255), round(b * 255)


def background_colour(customer_id: uuid.UUID) -> tuple[int, int, int]:
    """A colour fixed by the customer id, dark enough for white initials (WCAG AA contrast)."""
    digest = hashlib.sha256(customer_id.bytes).digest()
    hue = int.from_bytes(digest[:2], "big") % 360
    saturation = 0.45 + (digest[2] % 25) / 100  # 0.45 .. 0.69
    lightness = 0.42
    rgb = _hsl_to_rgb(hue, saturation, lightness)
    while contrast_ratio(rgb, (255, 255, 255)) < WHITE_TEXT_MIN_CONTRAST and lightness > 0.05:
        lightness -= 0.02  # yellows and greens are bright: darken until white text reads well
        rgb = _hsl_to_rgb(hue, saturation, lightness)
    return rgb


def initials_svg(customer_id: uuid.UUID, full_name: str) -> bytes:
    """The generated avatar: a square SVG with the initials, no script, no external resource."""
    text = html.escape(initials(full_name), quote=True)
    r, g, b = background_colour(customer_id)
    font_size = 56 if len(initials(full_name)) <= 1 else 48
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{SVG_SIZE}" height="{SVG_SIZE}" '
        f'viewBox="0 0 {SVG_SIZE} {SVG_SIZE}" role="img" aria-label="{text}">'
        f'<rect width="{SVG_SIZE}" height="{SVG_SIZE}" fill="#{r:02x}{g:02x}{b:02x}"/>'
        f'<text x="50%" y="50%" dy="0.35em" text-anchor="middle" fill="#ffffff" '
        f"font-family=\"system-ui, -apple-system, 'Segoe UI', Roboto, 'Noto Sans', sans-serif\" "
        f'font-size="{font_size}" font-weight="600">{text}</text></svg>'
    )
    return svg.encode("utf-8")
