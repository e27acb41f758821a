"""Dict round trip and field checks shared by the model config dataclasses."""

from __future__ import annotations

import dataclasses
from typing import Any, Self


class ConfigMixin:
    """``to_dict`` / ``from_dict`` for a flat dataclass of plain values (saved in checkpoints)."""

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (JSON-serialisable)."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Build from :meth:`to_dict` output; unknown keys are an error, missing keys default."""
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(
                f"{cls.__name__}.from_dict: unknown field(s) {unknown}; valid fields: "
                f"{sorted(names)}"
            )
        return cls(**data)


def check(ok: bool, owner: str, field: str, value: Any, expected: str) -> None:
    """Raise ``ValueError`` naming ``owner.field`` when ``ok`` is False."""
    if not ok:
        raise ValueError(f"{owner}.{field} must be {expected}, got {value!r}")
