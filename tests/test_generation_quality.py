"""Generation-quality measures: spectral distance, classifier two-sample test, surrogates."""

from __future__ import annotations

import numpy as np
import pytest

from brainmill.generation_quality import (
    classifier_two_sample_test,
    log_spectral_distance,
    mean_psd,
    phase_randomized,
    window_descriptors,
)

SFREQ = 100.0


def noise(n=200, length=400, seed=0, scale=1.0):
    return scale * np.random.default_rng(seed).standard_normal((n, length))


def spiky(n=200, length=400, seed=0):
    """Sparse one-sided spikes: the same flat spectrum as noise, but skewed and heavy-tailed."""
    rng = np.random.default_rng(seed)
    X = (rng.random((n, length)) < 0.02) * rng.exponential(5.0, (n, length))
    return (X - X.mean(1, keepdims=True)) / X.std(1, keepdims=True)


def test_log_spectral_distance_of_scaled_power_is_its_decibels():
    X = noise()
    assert log_spectral_distance(X, X, SFREQ) == 0.0
    # twice the amplitude is four times the power: 10·log10(4) dB at every frequency
    assert log_spectral_distance(2 * X, X, SFREQ) == pytest.approx(10 * np.log10(4), rel=1e-9)
    assert log_spectral_distance(X, noise(seed=1), SFREQ) < 1.0  # sampling noise only
    with pytest.raises(ValueError, match="no frequency bin"):
        log_spectral_distance(X, X, SFREQ, band=(60, 80))


def test_mean_psd_finds_a_rhythm():
    t = np.arange(400) / SFREQ
    X = np.sin(2 * np.pi * 12 * t)[None].repeat(5, 0) + 0.1 * noise(5)
    f, p = mean_psd(X, SFREQ)
    assert f[p.argmax()] == 12.0


def test_phase_randomized_keeps_the_periodogram_and_gaussianises():
    X = spiky(50)
    S = phase_randomized(X, seed=3)
    np.testing.assert_allclose(np.abs(np.fft.rfft(S)), np.abs(np.fft.rfft(X)), rtol=1e-8,
                               atol=1e-8)
    np.testing.assert_allclose(S.mean(1), X.mean(1), atol=1e-12)
    assert not np.allclose(S, X)
    from scipy.stats import kurtosis
    assert kurtosis(X, axis=1).mean() > 10 > abs(kurtosis(S, axis=1).mean())
    np.testing.assert_array_equal(S, phase_randomized(X, seed=3))


def recordings(n_recordings, windows_each, seed, length=400):
    """Windows cut from recordings of one distribution, each with its own fingerprint (an
    amplitude and a rhythm): windows of a recording resemble each other."""
    rng = np.random.default_rng(seed)
    t = np.arange(length) / SFREQ
    X, groups = [], []
    for r in range(n_recordings):
        scale, freq = rng.uniform(0.5, 2.0), rng.uniform(5, 30)
        for _ in range(windows_each):
            X.append(scale * (rng.standard_normal(length)
                              + np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))))
            groups.append(f"rec{seed}-{r}")
    return np.array(X), np.array(groups)


def test_grouped_two_sample_test_keeps_each_recording_in_one_fold(monkeypatch):
    """With groups, no recording has windows on both sides of a split, so the classifier
    cannot score by recognising recordings; without, windows are split freely."""
    import brainmill.generation_quality as gq

    splits = []
    real_cvp = gq.cross_val_predict

    def spy(clf, X, y, cv, groups=None):
        splits.append([(tr, te) for tr, te in cv.split(X, y, groups)])
        return real_cvp(clf, X, y, cv=cv, groups=groups)

    monkeypatch.setattr(gq, "cross_val_predict", spy)
    a, ga = recordings(12, 10, seed=0)
    b, gb = recordings(12, 10, seed=1)
    grouped = classifier_two_sample_test(a, b, SFREQ, real_groups=ga, fake_groups=gb)
    ungrouped = classifier_two_sample_test(a, b, SFREQ)
    assert grouped["grouped"] and not ungrouped["grouped"]
    # the windows in the order the test drew them (its own seed): recover each one's group
    rng = np.random.default_rng(0)
    pick_a, pick_b = rng.choice(len(a), len(a), replace=False), rng.choice(len(b), len(b),
                                                                            replace=False)
    labels = np.concatenate([ga[pick_a], gb[pick_b]])
    for train, test in splits[0]:
        assert not set(labels[train]) & set(labels[test])
    assert any(set(labels[tr]) & set(labels[te]) for tr, te in splits[1])
    assert sorted(np.concatenate([te for _, te in splits[0]])) == list(range(len(labels)))
    with pytest.raises(ValueError, match="3 groups, fewer than n_folds=5"):
        classifier_two_sample_test(a[:30], b[:30], SFREQ, real_groups=ga[:30])
    with pytest.raises(ValueError, match="one group per window"):
        classifier_two_sample_test(a, b, SFREQ, real_groups=ga[:5])


def test_two_sample_test_at_chance_for_one_distribution_and_high_for_two():
    same = classifier_two_sample_test(noise(seed=0), noise(seed=1), SFREQ)
    assert 0.35 < same["accuracy"] < 0.65 and same["p_value"] > 0.01
    # equal spectra, different waveforms: the descriptors beyond the spectrum catch it
    differ = classifier_two_sample_test(spiky(), noise(), SFREQ)
    assert differ["accuracy"] > 0.95 and differ["p_value"] < 1e-10
    # the surrogates of spiky windows are told apart from them too
    surrogate = classifier_two_sample_test(spiky(), phase_randomized(spiky(seed=1)), SFREQ)
    assert surrogate["accuracy"] > 0.95
    assert differ["n_per_set"] == 200


def test_descriptors_are_finite_and_named_by_shape():
    D = window_descriptors(noise(10, 300), SFREQ)
    assert D.shape == (10, 1 + 5 + 7) and np.all(np.isfinite(D))
    assert window_descriptors(noise(10, 300), 20.0).shape[1] == 1 + 3 + 7  # bands ≤ Nyquist
    with pytest.raises(ValueError, match="NaN"):
        window_descriptors(np.full((2, 10), np.nan), SFREQ)


def test_channel_groups_by_scalp_region():
    from brainmill.generation_quality import channel_groups

    groups = channel_groups(["Fp1", "FC3", "C3", "Cz", "CP4", "T7", "TP8", "P3", "PO7", "O1",
                             "Iz", "EOG"])
    assert groups == {"central": [1, 2, 3, 4], "frontal": [0], "occipital": [9, 10],
                      "other": [11], "parietal": [7, 8], "temporal": [5, 6],
                      "all": list(range(12))}
