"""Per-epoch covariance features."""

import mne
import numpy as np
import pandas as pd
import pytest
from pyriemann.estimation import Covariances

from brainmill.config import CovarianceFeature
from brainmill.features.covariance import compute_covariances


@pytest.fixture
def epochs():
    rng = np.random.default_rng(1)
    n, c, t = 12, 4, 200
    X = rng.normal(size=(n, c, t)) * 1e-5
    X[:6, 0] *= 3  # class 0 has more variance on the first channel
    info = mne.create_info([f"E{i}" for i in range(c)], 100.0, "eeg")
    labels = ["a"] * 6 + ["b"] * 6
    meta = pd.DataFrame({"label": labels, "session": ["1", "2"] * 6, "run": ["1"] * n})
    events = np.c_[np.arange(n) * 300, np.zeros(n, int), [1] * 6 + [2] * 6]
    return mne.EpochsArray(X, info, events=events, event_id={"a": 1, "b": 2},
                           metadata=meta, verbose="error")


@pytest.mark.parametrize("estimator", ["oas", "scm", "lwf"])
def test_matches_pyriemann_and_is_spd(epochs, estimator):
    fs = compute_covariances(epochs, CovarianceFeature(estimator=estimator), ["a", "b"])
    ref = Covariances(estimator).fit_transform(epochs.get_data())
    np.testing.assert_allclose(fs.X, ref, rtol=1e-12)
    assert fs.X.shape == (12, 4, 4)
    assert np.all(np.linalg.eigvalsh(fs.X) > 0)
    np.testing.assert_array_equal(fs.y, [0] * 6 + [1] * 6)
    assert list(fs.session[:2]) == ["1", "2"]
    assert fs.meta["params"] == {"estimator": estimator}


def test_each_matrix_depends_on_its_epoch_only(epochs):
    """No cross-epoch fitting: dropping epochs does not change the others' covariances."""
    full = compute_covariances(epochs, CovarianceFeature(), ["a", "b"]).X
    part = compute_covariances(epochs[3:], CovarianceFeature(), ["a", "b"]).X
    np.testing.assert_allclose(part, full[3:], rtol=1e-12)


def test_class_variance_shows_in_features(epochs):
    fs = compute_covariances(epochs, CovarianceFeature(estimator="scm"), ["a", "b"])
    assert fs.X[fs.y == 0, 0, 0].mean() > 4 * fs.X[fs.y == 1, 0, 0].mean()
