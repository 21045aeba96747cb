"""The serving policy: how every study image, real or synthetic, becomes the one PNG a reader is shown.

One function, one set of choices, used for both classes so that nothing but the anatomy differs:

* resize so the longest side is ``size`` pixels, with Pillow's Lanczos filter (a = 3) on the float data.
  Pillow widens the kernel by the scale factor when shrinking, so downscaling averages over the source area
  (antialiasing) and upscaling interpolates; the same filter is used in both directions;
* pad to a ``size`` x ``size`` canvas, image centred, padding black (0);
* quantise to 8 bits with rounding (``imaging.png.to_uint8``);
* encode as 8-bit grayscale PNG with a fixed filter and zlib level and no ancillary chunks
  (``imaging.png.encode_png_gray8``): only IHDR, IDAT and IEND, so no text, gamma, colour profile,
  physical size or time can reach the reader.

``describe_served`` measures the served files for the blinding audit, which checks that a trivial classifier
on these numbers cannot separate real from synthetic images.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from imaging.png import encode_png_gray8, read_png_chunks, to_uint8
from imaging.read import sha256_hex

DEFAULT_DISPLAY_SIZE = 1024
RESAMPLING_FILTER = Image.Resampling.LANCZOS


@dataclass(frozen=True)
class ServedImage:
    """A served PNG with the facts the web layer needs: its bytes, digest and dimensions."""

    png: bytes
    sha256: str
    width: int
    height: int


@dataclass(frozen=True)
class ServedImageStats:
    """File and intensity properties of a served PNG that could betray its class if they differed.

    Intensities are on a 0..1 scale. ``black_border_fraction`` is the share of the canvas in all-black rows
    and columns at the edges (the padding, plus any black border of the source); ``content_width`` and
    ``content_height`` are the size of what remains. ``sharpness`` is the mean absolute 4-neighbour Laplacian
    inside that content box, which separates upscaled (smooth) from native-resolution images.
    """

    width: int
    height: int
    size_bytes: int
    bit_depth: int
    colour_type: int
    chunk_types: tuple[str, ...]
    mean: float
    std: float
    p1: float
    p99: float
    black_border_fraction: float
    content_width: int
    content_height: int
    sharpness: float
    bits_per_pixel: float

    def features(self) -> dict[str, float]:
        """The numeric properties as one flat mapping, in a fixed order, for a classifier."""
        return {name: float(value) for name, value in asdict(self).items() if name in FEATURE_NAMES}


FEATURE_NAMES: tuple[str, ...] = (
    "width",
    "height",
    "size_bytes",
    "mean",
    "std",
    "p1",
    "p99",
    "black_border_fraction",
    "content_width",
    "content_height",
    "sharpness",
    "bits_per_pixel",
)


def served_image_size(size: int = DEFAULT_DISPLAY_SIZE) -> tuple[int, int]:
    """(width, height) of every served image for a given display size: always a square canvas."""
    _check_size(size)
    return size, size


def fitted_size(width: int, height: int, size: int = DEFAULT_DISPLAY_SIZE) -> tuple[int, int]:
    """(width, height) of an image after scaling its longest side to ``size``, keeping the aspect ratio."""
    _check_size(size)
    if width <= 0 or height <= 0:
        raise ValueError(f"Cannot fit an empty {width} x {height} image.")
    longest = max(width, height)
    return max(1, round(width * size / longest)), max(1, round(height * size / longest))


def normalise_for_serving(
    pixels: np.ndarray,
    *,
    size: int = DEFAULT_DISPLAY_SIZE,
    crop_square: bool = False,
    working_resolution: int | None = None,
) -> bytes:
    """Display pixels (2-D float in [0, 1]) -> the served PNG bytes; identical pixels give identical bytes.

    Two options remove giveaways between sources, applied identically to every image of a study:
    `crop_square` keeps the centred square of the image (no aspect ratio, no black bars), and
    `working_resolution` first reduces images larger than it to that longest side (e.g. a generator's native
    512 px), so that native high-resolution images are not sharper than upscaled generated ones.
    """
    return encode_png_gray8(
        render_canvas(pixels, size=size, crop_square=crop_square, working_resolution=working_resolution)
    )


def render_served_image(pixels: np.ndarray, *, size: int = DEFAULT_DISPLAY_SIZE) -> ServedImage:
    """:func:`normalise_for_serving` plus the digest and dimensions the web layer records."""
    png = normalise_for_serving(pixels, size=size)
    width, height = served_image_size(size)
    return ServedImage(png=png, sha256=sha256_hex(png), width=width, height=height)


def render_canvas(
    pixels: np.ndarray,
    *,
    size: int = DEFAULT_DISPLAY_SIZE,
    crop_square: bool = False,
    working_resolution: int | None = None,
) -> np.ndarray:
    """The served image as a ``size`` x ``size`` uint8 array, before PNG encoding."""
    _check_size(size)
    if working_resolution is not None:
        _check_size(working_resolution)
    image = np.asarray(pixels)
    if image.ndim != 2:
        raise ValueError(f"Expected a 2-D grayscale image, got an array of shape {image.shape}.")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"Cannot serve an empty image of shape {image.shape}.")
    if not np.issubdtype(image.dtype, np.floating):
        raise TypeError(f"Expected floating-point display values in [0, 1], got dtype {image.dtype}.")
    if not np.all(np.isfinite(image)):
        raise ValueError("The image contains NaN or infinite values.")
    low, high = float(image.min()), float(image.max())
    if low < -1e-6 or high > 1 + 1e-6:
        raise ValueError(f"Display values must lie in [0, 1]; got {low:g}..{high:g}.")

    if crop_square:
        image = _centre_square(image)
    source = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32))
    height, width = image.shape
    if working_resolution is not None and max(width, height) > working_resolution:
        width, height = fitted_size(width, height, working_resolution)
        source = source.resize((width, height), resample=RESAMPLING_FILTER)
    new_width, new_height = fitted_size(width, height, size)
    if (new_width, new_height) != (width, height):
        source = source.resize((new_width, new_height), resample=RESAMPLING_FILTER)
    resized = to_uint8(np.asarray(source, dtype=np.float32))

    canvas = np.zeros((size, size), dtype=np.uint8)
    top, left = (size - new_height) // 2, (size - new_width) // 2
    canvas[top : top + new_height, left : left + new_width] = resized
    return canvas


def _centre_square(image: np.ndarray) -> np.ndarray:
    height, width = image.shape
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return image[top : top + side, left : left + side]


def describe_served(png_bytes: bytes) -> ServedImageStats:
    """Measure a served PNG (any PNG is accepted) for the blinding audit."""
    chunks = read_png_chunks(png_bytes)
    if not chunks or chunks[0].type != "IHDR":
        raise ValueError("The PNG stream does not start with an IHDR chunk.")
    bit_depth, colour_type = png_bytes[24], png_bytes[25]
    with Image.open(io.BytesIO(png_bytes), formats=["PNG"]) as image:
        gray = np.asarray(image.convert("L") if image.mode != "L" else image)
    height, width = gray.shape
    levels = gray.astype(np.float64) / 255.0

    rows = np.flatnonzero(gray.any(axis=1))
    columns = np.flatnonzero(gray.any(axis=0))
    if rows.size:
        top, bottom, left, right = rows[0], rows[-1] + 1, columns[0], columns[-1] + 1
    else:
        top = bottom = left = right = 0
    content = levels[top:bottom, left:right]
    content_area = content.size
    return ServedImageStats(
        width=width,
        height=height,
        size_bytes=len(png_bytes),
        bit_depth=bit_depth,
        colour_type=colour_type,
        chunk_types=tuple(chunk.type for chunk in chunks),
        mean=float(levels.mean()),
        std=float(levels.std()),
        p1=float(np.percentile(levels, 1)),
        p99=float(np.percentile(levels, 99)),
        black_border_fraction=1.0 - content_area / levels.size,
        content_width=int(right - left),
        content_height=int(bottom - top),
        sharpness=_mean_abs_laplacian(content),
        bits_per_pixel=8.0 * len(png_bytes) / (width * height),
    )


def _mean_abs_laplacian(image: np.ndarray) -> float:
    if image.shape[0] < 3 or image.shape[1] < 3:
        return 0.0
    laplacian = 4.0 * image[1:-1, 1:-1] - image[:-2, 1:-1] - image[2:, 1:-1] - image[1:-1, :-2] - image[1:-1, 2:]
    return float(np.mean(np.abs(laplacian)))


def _check_size(size: int) -> None:
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"The display size must be a positive integer, got {size!r}.")
