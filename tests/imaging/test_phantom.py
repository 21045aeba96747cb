"""The demo chest phantom: deterministic, chest-shaped, and two styles a careful reader could tell apart."""

from __future__ import annotations

import numpy as np
import pytest

from imaging.phantom import chest_phantom


def test_same_seed_size_and_style_give_the_same_image() -> None:
    np.testing.assert_array_equal(chest_phantom(42), chest_phantom(42))
    np.testing.assert_array_equal(chest_phantom(42, size=256, style="b"), chest_phantom(42, size=256, style="b"))


def test_seeds_and_styles_give_different_images() -> None:
    assert not np.array_equal(chest_phantom(1), chest_phantom(2))
    assert not np.array_equal(chest_phantom(1, style="a"), chest_phantom(1, style="b"))


@pytest.mark.parametrize("size", [64, 512, 700])
def test_shape_type_and_range(size: int) -> None:
    image = chest_phantom(3, size=size)

    assert image.shape == (size, size)
    assert image.dtype == np.float32
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    assert image.std() > 0.1


def region(image: np.ndarray, x: float, y: float, half: float = 0.04) -> float:
    """Mean of a small square around normalised coordinates (x, y) in [-1, 1], y downwards."""
    size = image.shape[0]
    col, row, radius = int((x + 1) / 2 * size), int((y + 1) / 2 * size), max(1, int(half / 2 * size))
    return float(image[row - radius : row + radius, col - radius : col + radius].mean())


@pytest.mark.parametrize("style", ["a", "b"])
def test_anatomy_is_where_a_frontal_chest_film_has_it(style: str) -> None:
    for seed in range(5):
        image = chest_phantom(seed, style=style)
        right_lung, left_lung = region(image, -0.45, -0.2), region(image, 0.5, -0.2)
        mediastinum, heart = region(image, 0.0, -0.3), region(image, 0.1, 0.3)
        outside = region(image, -0.93, -0.85)
        assert right_lung < mediastinum - 0.15 and left_lung < mediastinum - 0.15
        assert right_lung < heart - 0.15
        assert outside < right_lung


def test_style_b_is_smoother_than_style_a() -> None:
    def mean_abs_laplacian(image: np.ndarray) -> float:
        inner = image[1:-1, 1:-1]
        return float(np.abs(4 * inner - image[:-2, 1:-1] - image[2:, 1:-1] - image[1:-1, :-2] - image[1:-1, 2:]).mean())

    for seed in range(5):
        assert mean_abs_laplacian(chest_phantom(seed, style="b")) < 0.8 * mean_abs_laplacian(chest_phantom(seed))


@pytest.mark.parametrize(("arguments", "message"), [({"style": "c"}, "style"), ({"size": 8}, "size")])
def test_bad_arguments_are_refused(arguments: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        chest_phantom(0, **arguments)  # type: ignore[arg-type]
