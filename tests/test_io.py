"""Atomic writes and the FeatureSet format."""

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
