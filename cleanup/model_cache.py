"""A process-level cache of loaded models (SAM predictors, inpainting pipelines): loaded once per worker.

Keys are tuples naming what was loaded (kind, path, architecture, device, dtype). Loading happens under a lock
so two threads of one worker never load the same multi-gigabyte model twice.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")

_models: dict[Hashable, Any] = {}
_lock = threading.Lock()


def cached_model(key: Hashable, load: Callable[[], T]) -> T:
    """Return the model cached under ``key``, calling ``load()`` the first time."""
    with _lock:
        if key not in _models:
            _models[key] = load()
        return _models[key]


def cached_keys() -> tuple[Hashable, ...]:
    with _lock:
        return tuple(_models)


def clear_model_cache() -> None:
    """Forget every cached model (and free accelerator memory held by them, when torch is loaded)."""
    import sys

    with _lock:
        _models.clear()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
