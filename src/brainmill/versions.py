"""Versions of brainmill and the libraries it builds on, recorded next to every result."""

from __future__ import annotations

import importlib

from . import __version__

LIBRARIES = ["numpy", "scipy", "pandas", "mne", "mne_bids", "nilearn", "pyriemann", "sklearn",
             "torch", "snakemake", "pydantic", "matplotlib"]


def library_versions(names: list[str] = LIBRARIES) -> dict[str, str]:
    """``{"brainmill": …, name: version}``; ``"not installed"`` for a missing library."""
    versions = {"brainmill": __version__}
    for name in names:
        try:
            versions[name] = getattr(importlib.import_module(name), "__version__", "?")
        except ImportError:
            versions[name] = "not installed"
    return versions
