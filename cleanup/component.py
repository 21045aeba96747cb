"""What every stage of the cleanup pipeline (detectors, segmenters, inpainters) has in common."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any


class RecordedSettings:
    """Mixin for a stage written as a dataclass with a `name` field: its settings, recorded with every cleanup
    result, are all its other fields (nested dataclasses as dicts)."""

    def settings(self) -> dict[str, Any]:
        values = asdict(self)  # the subclasses are dataclasses
        values.pop("name")
        return values
