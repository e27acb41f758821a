"""Template montage names across MNE versions."""

import mne
import numpy as np
import pytest

from brainmill.montage import make_standard_montage, resolve_montage_name


def test_old_names_resolve_to_a_name_this_mne_knows():
    builtin = mne.channels.get_builtin_montages()
    for name in ("standard_1005", "standard_1020", "biosemi64"):
        assert resolve_montage_name(name) in builtin


def test_positions_are_the_10_05_template(recwarn):
    mont = make_standard_montage("standard_1005")
    assert not [w for w in recwarn if issubclass(w.category, FutureWarning)]
    pos = mont.get_positions()["ch_pos"]
    # C3 and C4 mirror each other across the midline, Cz sits on it
    np.testing.assert_allclose(pos["C3"][0], -pos["C4"][0], atol=5e-3)
    assert abs(pos["Cz"][0]) < 5e-3


def test_unknown_name_raises():
    with pytest.raises(ValueError):
        make_standard_montage("no_such_montage")
