"""Versions of brainmill and the libraries it builds on, recorded next to every result."""

from __future__ import annotations

from importlib import metadata

from . import __version__

LIBRARIES = ["numpy", "scipy", "pandas", "mne", "mne_bids", "nilearn", "pyriemann", "sklearn",
             "torch", "snakemake", "pydantic", "matplotlib"]

# import name -> distribution name, where they differ
_DISTRIBUTIONS = {"sklearn": "scikit-learn", "mne_bids": "mne-bids"}


def library_versions(names: list[str] = LIBRARIES) -> dict[str, str]:
    """``{"brainmill": …, name: version}``; ``"not installed"`` for a missing library.

    Read from the installed distributions' metadata rather than by importing each library:
    importing pyriemann, torch and nilearn costs several seconds in every report job, and the
    installed metadata is what ``pip`` reports (the test suite checks it equals
    ``module.__version__``).
    """
    versions = {"brainmill": __version__}
    for name in names:
        try:
            versions[name] = metadata.version(_DISTRIBUTIONS.get(name, name))
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
