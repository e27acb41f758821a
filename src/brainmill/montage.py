"""MNE's template montages by name, across MNE versions.

MNE 1.13 renamed ``standard_1005`` / ``standard_1020`` to ``colin27_1005`` / ``colin27_1020``
(same positions) and removes the old names in 1.14. Configs keep the familiar names; this
module hands MNE whichever name the installed version knows.
"""

from __future__ import annotations

import mne

_RENAMED = {"standard_1005": "colin27_1005", "standard_1020": "colin27_1020"}


def resolve_montage_name(name: str) -> str:
    """The name the installed MNE uses for the template montage ``name``."""
    new = _RENAMED.get(name)
    if new is not None and new in mne.channels.get_builtin_montages():
        return new
    return name


def make_standard_montage(name: str) -> mne.channels.DigMontage:
    """:func:`mne.channels.make_standard_montage` that accepts the pre-1.13 names.

    Raises
    ------
    ValueError
        If MNE has no montage of that name.
    """
    return mne.channels.make_standard_montage(resolve_montage_name(name))
