"""Model-root policy: which server folders base models, LoRA adapters and other model files may be read from.

Every path a form, the API or a stored job gives is resolved (user folder expanded, links followed) and refused
unless it lies inside MODEL_ROOT or MODEL_EXTRA_ROOTS: a form must never make the server read an arbitrary folder.
Used by generation, cleanup and training alike.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

DEMO_MARKER = "DEMO_MODEL.txt"


class PathRefused(ValueError):
    """A model or adapter path that is not inside an allowed model root."""


def model_roots() -> list[Path]:
    """Folders model and adapter folders may be chosen from: MODEL_ROOT and MODEL_EXTRA_ROOTS, resolved."""
    roots = [Path(settings.MODEL_ROOT), *getattr(settings, "MODEL_EXTRA_ROOTS", [])]
    return list(dict.fromkeys(Path(root).expanduser().resolve() for root in roots))


def resolve_in_roots(path: str | Path) -> Path:
    """An absolute path, or one relative to MODEL_ROOT, resolved (links followed) and refused with PathRefused
    unless it lies inside a model root: a form must never make the server read an arbitrary folder."""
    text = str(path).strip()
    if not text:
        raise PathRefused("Give a folder.")
    candidate = Path(text).expanduser()
    if not candidate.is_absolute():
        candidate = Path(settings.MODEL_ROOT) / candidate
    resolved = candidate.resolve()
    roots = model_roots()
    if not any(resolved == root or root in resolved.parents for root in roots):
        allowed = ", ".join(str(root) for root in roots)
        raise PathRefused(f"{resolved} is not inside a model folder root ({allowed}).")
    return resolved


def is_demo_model(path: Path) -> bool:
    return (Path(path) / DEMO_MARKER).is_file()
