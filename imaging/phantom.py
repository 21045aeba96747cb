"""Seeded frontal chest radiograph phantoms, so the demo can run a reader study with no image folders.

The phantom is built from simple shapes in normalised coordinates (x and y in [-1, 1], image left = patient's
right, as on a PA film): a soft-tissue torso, two dark lung fields cut by diaphragm domes, a bright
mediastinum, spine and heart, posterior and fainter anterior ribs as curved bands, clavicles, a faint
vascular texture around the hila, and noise. Two styles differ subtly so that a careful reader has something
to find: style "a" has sharper detail and fine-grained noise; style "b" is smoother (a slight blur and
low-pass noise) and its ribs sit about 7 per cent further apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.ndimage import gaussian_filter

PhantomStyle = Literal["a", "b"]


@dataclass(frozen=True)
class _StyleParameters:
    rib_spacing: float
    noise_sigma: float
    noise_blur_px: float
    image_blur_px: float
    texture_blur_px: float


_STYLES: dict[str, _StyleParameters] = {
    "a": _StyleParameters(
        rib_spacing=0.104, noise_sigma=0.020, noise_blur_px=0.0, image_blur_px=0.6, texture_blur_px=2.5
    ),
    "b": _StyleParameters(
        rib_spacing=0.111, noise_sigma=0.012, noise_blur_px=1.6, image_blur_px=1.4, texture_blur_px=4.0
    ),
}


def chest_phantom(seed: int, *, size: int = 512, style: PhantomStyle = "a") -> np.ndarray:
    """A ``size`` x ``size`` float32 chest phantom in [0, 1]; equal seed, size and style give equal images."""
    if style not in _STYLES:
        raise ValueError(f"Unknown phantom style {style!r}; expected 'a' or 'b'.")
    if not isinstance(size, int) or size < 32:
        raise ValueError(f"The phantom size must be an integer of at least 32 pixels, got {size!r}.")
    params = _STYLES[style]
    rng = np.random.default_rng([seed, ord(style)])
    # Anatomy varies from seed to seed: position, size and tilt.
    tilt = np.deg2rad(rng.uniform(-2.5, 2.5))
    shift_x, shift_y = rng.uniform(-0.03, 0.03, size=2)
    coords = ((np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1).astype(np.float32)
    y0, x0 = np.meshgrid(coords, coords, indexing="ij")
    x = np.float32(np.cos(tilt)) * x0 - np.float32(np.sin(tilt)) * y0 - np.float32(shift_x)
    y = np.float32(np.sin(tilt)) * x0 + np.float32(np.cos(tilt)) * y0 - np.float32(shift_y)
    edge = 3 * 2.0 / size

    # Torso: broad chest, sloping shoulders, narrow neck.
    chest_half_width = 0.84 + 0.05 * np.clip(y, 0, 1) + rng.uniform(-0.04, 0.03)
    shoulder = np.clip((y + 0.97) / 0.22, 0, 1) ** 0.6
    torso = _soft(0.17 + (chest_half_width - 0.17) * shoulder - np.abs(x), edge)

    lung_height = rng.uniform(0.64, 0.70)
    lung_width = rng.uniform(0.30, 0.33)
    dome_right, dome_left = rng.uniform(0.56, 0.62), rng.uniform(0.62, 0.68)
    lungs = np.zeros_like(x)
    for side, dome in ((-1.0, dome_right), (1.0, dome_left)):
        centre_x, centre_y = side * 0.41, -0.06
        u = (x - centre_x) / lung_width
        v = (y - centre_y) / lung_height
        # A rounded lung field that narrows towards the apex, cut below by the diaphragm dome.
        u = u * (1 + 0.45 * np.clip(-v, 0, 1))
        shape = 1 - (np.abs(u) ** 2.4 + np.abs(v) ** 2.4)
        dome_curve = dome - 0.16 * np.cos(np.clip((x - centre_x) / lung_width, -1.5, 1.5))
        lungs = np.maximum(lungs, _soft(shape, 0.05) * _soft(dome_curve - y, edge))
    lateral_wall = 0.41 + lung_width * 1.05

    heart_x, heart_y = rng.uniform(0.10, 0.15), rng.uniform(0.26, 0.32)
    heart_a, heart_b = rng.uniform(0.34, 0.40), rng.uniform(0.26, 0.30)
    heart = _soft(1 - ((x - heart_x) / heart_a) ** 2 - ((y - heart_y) / heart_b) ** 2, 0.25)
    mediastinum_half_width = 0.12 + 0.03 * np.clip(-y - 0.3, 0, 1)
    mediastinum = _soft(mediastinum_half_width - np.abs(x - 0.01), edge * 2)
    lungs = lungs * (1 - heart) * (1 - mediastinum)
    trachea = _soft(0.032 - np.abs(x), edge) * _soft(-0.22 - y, 0.03)
    abdomen = _soft(y - np.where(x < 0, np.float32(dome_right), np.float32(dome_left)) + 0.1, 0.06) * (1 - lungs)
    bubble = _soft(1 - ((x - 0.40) / 0.10) ** 2 - ((y - dome_left - 0.06) / 0.05) ** 2, 0.3)

    spine = _soft(0.06 - np.abs(x), edge)
    vertebrae = 0.5 + 0.5 * np.cos((y + rng.uniform(0, 1)) * np.pi / 0.06)
    ribs = _rib_bands(x, y, params.rib_spacing, lateral_wall, rng)
    clavicles = np.zeros_like(x)
    for side in (-1.0, 1.0):
        s = side * x
        line_y = -0.70 - 0.20 * (s - 0.1) + 0.25 * (s - 0.1) ** 2 + rng.uniform(-0.02, 0.02)
        clavicles = np.maximum(
            clavicles, _bump(((y - line_y) / 0.03) ** 2) * _soft(s - 0.07, edge) * _soft(0.6 - s, 0.03)
        )

    # Vessels: the zero crossings of smoothed noise form a branching web, densest at the hila.
    field = gaussian_filter(
        rng.standard_normal(x.shape, dtype=np.float32), params.texture_blur_px * size / 512, truncate=3.0
    )
    field /= field.std() + 1e-6
    web = _bump((field / 0.35) ** 2)
    hilum = _bump(np.sqrt(((np.abs(x) - 0.18) / 0.5) ** 2 + ((y + 0.05) / 0.6) ** 2) * 2.2)

    image = 0.50 * torso
    # Lungs darken less towards the bases, where more soft tissue overlies them.
    image -= 0.34 * lungs * torso * (1 - 0.25 * np.clip((y + 0.2) / 0.8, 0, 1))
    image += 0.16 * lungs * web * hilum
    image += 0.06 * heart + 0.05 * mediastinum * torso - 0.07 * trachea
    image += 0.05 * (0.6 + 0.4 * vertebrae) * spine * torso * _soft(0.2 - y, 0.2)
    image += ribs * torso * (0.45 + 0.55 * lungs)
    image += 0.10 * clavicles
    image += 0.04 * abdomen * torso - 0.16 * bubble

    if params.image_blur_px:
        image = gaussian_filter(image, params.image_blur_px * size / 512)
    noise = rng.standard_normal(x.shape, dtype=np.float32)
    if params.noise_blur_px:
        noise = gaussian_filter(noise, params.noise_blur_px * size / 512)
        noise /= noise.std() + 1e-6
    image += params.noise_sigma * noise * (0.3 + torso)

    brightness, contrast = rng.uniform(0.02, 0.05), rng.uniform(1.12, 1.24)
    return np.clip(brightness + contrast * image, 0.0, 1.0).astype(np.float32)


def _soft(distance: np.ndarray, width: float) -> np.ndarray:
    """A smooth 0-to-1 step: 0 well inside negative distances, 1 well inside positive ones."""
    return 0.5 * (1 + np.tanh(distance / np.float32(width)))


def _bump(z: np.ndarray) -> np.ndarray:
    """exp(-z) for z >= 0, floored at exp(-60): float32 results below 1e-38 are subnormal and very slow."""
    return np.exp(-np.minimum(z, 60.0))


def _rib_bands(
    x: np.ndarray, y: np.ndarray, spacing: float, lateral_wall: float, rng: np.random.Generator
) -> np.ndarray:
    """Posterior ribs rise from the spine and arc down laterally; fainter anterior ribs slope down medially.

    Every rib on a side follows the same curve shifted down by about ``spacing``, so one periodic profile of
    the distance below the curve draws them all at once.
    """
    s = np.abs(x) - 0.06
    inside = _soft(s, 0.01) * _soft(lateral_wall + 0.03 - np.abs(x), 0.02)
    posterior_curve = -0.12 * s + 0.75 * s**2
    anterior_curve = 0.45 * s - 0.35 * s**2

    bands = np.zeros_like(x)
    for curve, top, count, strength, thickness in (
        (posterior_curve, -0.80 + rng.uniform(-0.02, 0.02), 10, 0.075, 0.32),
        (anterior_curve, -0.60 + rng.uniform(-0.02, 0.02), 6, 0.03, 0.4),
    ):
        # Ribs spread a little towards the base of the chest.
        phase = np.maximum(y - curve - top, 0) / spacing
        phase = phase**0.93
        index = np.floor(phase)
        offset = phase - index - 0.5
        # Bright cortical rims around a fainter marrow centre.
        squared = (offset / (thickness / 2)) ** 2
        profile = _bump(squared * squared) * (0.7 + 0.6 * np.abs(offset))
        bands += strength * profile * ((index >= 0) & (index < count) & (y - curve - top > 0))
    return (bands * inside).astype(np.float32)
