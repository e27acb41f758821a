"""Atomic writes and the FeatureSet format."""

from pathlib import Path

import numpy as np
import pytest

from brainmill.io import FeatureSet, atomic_path, read_json, write_json


def test_atomic_path_leaves_destination_untouched_on_error(tmp_path):
    dest = tmp_path / "out.json"
    dest.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            tmp.write_text("half-written")
            raise RuntimeError("killed")
    assert dest.read_text() == "old"
    assert list(tmp_path.iterdir()) == [dest], "temporary file must be removed"


def test_atomic_path_replaces_on_success_and_keeps_suffix(tmp_path):
    dest = tmp_path / "sub" / "raw.fif"
    with atomic_path(dest, suffix="_raw.fif") as tmp:
        assert tmp.name.endswith("_raw.fif") and tmp.parent == dest.parent
        tmp.write_text("new")
    assert dest.read_text() == "new"


def test_json_roundtrip_with_numpy(tmp_path):
    write_json(tmp_path / "a.json", {"x": np.float64(1.5), "y": np.arange(3), "n": np.int64(2)})
    assert read_json(tmp_path / "a.json") == {"x": 1.5, "y": [0, 1, 2], "n": 2}


def test_featureset_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    fs = FeatureSet(X=rng.normal(size=(4, 3, 3)), y=np.array([0, 1, 0, 1]),
                    classes=["a", "b"], session=np.array(["1", "1", "2", "2"]),
                    run=np.array(["1"] * 4), meta={"k": [1, 2]})
    fs.save(tmp_path / "f.npz")
    back = FeatureSet.load(tmp_path / "f.npz")
    np.testing.assert_array_equal(back.X, fs.X)
    np.testing.assert_array_equal(back.y, fs.y)
    assert back.classes == ["a", "b"]
    assert list(back.session) == ["1", "1", "2", "2"]
    assert back.meta == {"k": [1, 2]}


def _long_raw(seconds: float):
    import mne

    rng = np.random.default_rng(0)
    data = rng.standard_normal((3, int(seconds * 100))) * 1e-5
    return mne.io.RawArray(data, mne.create_info(["C3", "Cz", "C4"], 100.0, "eeg"),
                           verbose="error")


def _visible(folder):
    return sorted(p.name for p in folder.iterdir())


def test_atomic_fif_moves_every_part_of_a_split_file(tmp_path):
    """MNE names the next part inside each part: the parts keep their final names."""
    import mne

    from brainmill.io import atomic_fif

    raw = _long_raw(10000.0)  # 12 MB as float32: 4 parts of at most 4 MB
    out = tmp_path / "sub-1" / "raw.fif"
    with atomic_fif(out) as tmp:
        raw.save(tmp, split_size="4MB", verbose="error")
    assert _visible(out.parent) == ["raw-1.fif", "raw-2.fif", "raw-3.fif", "raw.fif"]
    back = mne.io.read_raw_fif(out, preload=True, verbose="error")
    np.testing.assert_allclose(back.get_data(), raw.get_data(), rtol=1e-6, atol=1e-12)
    # a smaller save of the same file: the parts it no longer has are gone
    with atomic_fif(out) as tmp:
        _long_raw(5000.0).save(tmp, split_size="4MB", verbose="error")
    assert _visible(out.parent) == ["raw-1.fif", "raw.fif"]
    assert mne.io.read_raw_fif(out, verbose="error").n_times == 500000


def test_atomic_fif_leaves_nothing_on_error_and_tidies_dead_writers(tmp_path):
    from brainmill.io import _HOST, atomic_fif

    out = tmp_path / "raw.fif"
    with pytest.raises(RuntimeError), atomic_fif(out) as tmp:
        _long_raw(10.0).save(tmp, verbose="error")
        raise RuntimeError("killed mid-way")
    assert list(tmp_path.iterdir()) == []
    # the hidden folder of a writer that died (pid 999999 is not running) is removed
    dead = tmp_path / f".raw.fif.{_HOST}-999999.x.tmpdir"
    dead.mkdir()
    (dead / "raw.fif").write_bytes(b"partial")
    with atomic_fif(out) as tmp:
        _long_raw(10.0).save(tmp, verbose="error")
    assert _visible(tmp_path) == ["raw.fif"]


def test_atomic_fif_interrupted_before_the_first_part_never_mixes_two_saves(tmp_path,
                                                                          monkeypatch):
    """Killed after moving the new later parts: the old first part is already gone, so no
    file pairs the old beginning with the new parts."""
    import mne

    import brainmill.io as bio

    out = tmp_path / "raw.fif"
    with bio.atomic_fif(out) as tmp:
        _long_raw(10000.0).save(tmp, split_size="4MB", verbose="error")
    real_replace = bio.os.replace

    def fail_on_first_part(src, dst):
        if Path(dst) == out:
            raise KeyboardInterrupt
        return real_replace(src, dst)

    monkeypatch.setattr(bio.os, "replace", fail_on_first_part)
    doubled = mne.io.RawArray(_long_raw(10000.0).get_data() * 2, _long_raw(1.0).info,
                              verbose="error")
    with pytest.raises(KeyboardInterrupt), bio.atomic_fif(out) as tmp:
        doubled.save(tmp, split_size="4MB", verbose="error")
    assert not out.exists()
