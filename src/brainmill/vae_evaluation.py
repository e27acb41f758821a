"""How well a demographic-conditioned VAE removes confounds and reproduces the data.

The metrics of DemoVAE (Orlichenko et al., arXiv 2405.07977), computed on held-out subjects:

- :func:`latent_demographic_correlation`: the largest ``|Pearson r|`` between any latent
  dimension (or any raw connectivity edge, the baseline) and each demographic; confound-free
  latents keep it near the chance level of independent variables.
- :func:`reconstruction_rmse`: how much of the data the latents plus demographics keep.
- :func:`transfer_scores`: a Ridge age regressor and a logistic sex classifier trained on one
  set and tested on another; train-on-synthetic-test-on-real (TSTR) shows that samples carry
  the demographic signal, train-on-real-test-on-synthetic (TRTS) that they are realistic.
- :func:`group_difference_agreement`: do synthetic samples reproduce a group difference
  (e.g. ASD minus TC mean connectivity) of the real data.
- :func:`site_stratified_folds` and :func:`diagnosis_scores`: leak-free diagnosis decoding from
  connectivity, from latents, and from latents plus demographics, the VAE being fitted on each
  training fold only.

Only numpy, pandas and sklearn are used; models come in as objects with ``fit(X,
demographics)`` and ``transform(X)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, balanced_accuracy_score, mean_squared_error
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from .errors import DataError

__all__ = [
    "DIAGNOSIS_FEATURES",
    "LatentModel",
    "demographic_matrix",
    "diagnosis_fold_scores",
    "diagnosis_scores",
    "group_difference_agreement",
    "latent_demographic_correlation",
    "reconstruction_rmse",
    "site_stratified_folds",
    "transfer_scores",
]

#: feature sets :func:`diagnosis_scores` decodes from, in the order they are reported
DIAGNOSIS_FEATURES = ("connectivity", "latents", "latents+demographics", "demographics")


class LatentModel(Protocol):
    """What :func:`diagnosis_scores` needs of a VAE."""

    def fit(self, X: np.ndarray, demographics: pd.DataFrame) -> Any: ...

    def transform(self, X: np.ndarray) -> np.ndarray: ...


def _as_2d(name: str, X: Any) -> np.ndarray:
    X = np.asarray(X, dtype=float)
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_subjects, n_features), got shape {X.shape}")
    return X


def _check_columns(demographics: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in demographics.columns]
    if missing:
        raise DataError(f"demographics lack column(s) {missing}",
                        expected=f"columns among {list(demographics.columns)}")


def _max_abs_corr(Z: np.ndarray, d: np.ndarray) -> float:
    """Largest ``|r|`` between ``d`` (n,) and the columns of ``Z`` (n, k).

    Constant columns of ``Z`` carry no linear association and count as ``r = 0``; a constant
    ``d`` gives NaN (the correlation is undefined).
    """
    dc = d - d.mean()
    d_norm = np.sqrt(dc @ dc)
    if d_norm == 0:
        return float("nan")
    Zc = Z - Z.mean(axis=0)
    z_norm = np.sqrt(np.einsum("ij,ij->j", Zc, Zc))
    r = np.zeros(Z.shape[1])
    ok = z_norm > 0
    r[ok] = (dc @ Zc[:, ok]) / (z_norm[ok] * d_norm)
    return float(np.max(np.abs(r)))


def latent_demographic_correlation(
    Z: np.ndarray,
    demographics: pd.DataFrame,
    continuous: Sequence[str] = ("age",),
    categorical: Sequence[str] = ("sex", "site"),
) -> dict[str, float]:
    """Largest absolute Pearson correlation between any column of ``Z`` and each demographic.

    Parameters
    ----------
    Z : ndarray, shape (n_subjects, n_dims)
        Latents, or raw connectivity edges for the baseline.
    demographics : DataFrame, n_subjects rows
        Row ``i`` describes subject ``i`` of ``Z``.
    continuous : sequence of str
        Numeric columns, correlated as they are.
    categorical : sequence of str
        Columns whose levels are each turned into a 0/1 indicator; the result is the maximum
        over the levels present.

    Returns
    -------
    dict
        ``{column: max |r|}``, one entry per continuous and categorical column. NaN where the
        demographic is constant in these rows (the correlation is undefined).
    """
    Z = _as_2d("Z", Z)
    if len(demographics) != len(Z):
        raise ValueError(f"Z has {len(Z)} rows but demographics has {len(demographics)}")
    _check_columns(demographics, [*continuous, *categorical])
    out: dict[str, float] = {}
    for col in continuous:
        out[col] = _max_abs_corr(Z, demographics[col].to_numpy(dtype=float))
    for col in categorical:
        values = demographics[col].astype(str).to_numpy()
        per_level = [_max_abs_corr(Z, (values == level).astype(float))
                     for level in np.unique(values)]
        per_level = [r for r in per_level if np.isfinite(r)]
        out[col] = max(per_level) if per_level else float("nan")
    return out


def reconstruction_rmse(X: np.ndarray, X_hat: np.ndarray) -> float:
    """Root-mean-square error over every entry, ``sqrt(mean((X - X_hat)**2))``.

    Parameters
    ----------
    X, X_hat : ndarray, shape (n_subjects, n_features)
    """
    X, X_hat = _as_2d("X", X), _as_2d("X_hat", X_hat)
    if X.shape != X_hat.shape:
        raise ValueError(f"X has shape {X.shape} but X_hat has shape {X_hat.shape}")
    return float(np.sqrt(np.mean((X - X_hat) ** 2)))


def transfer_scores(
    X_train: np.ndarray,
    demo_train: pd.DataFrame,
    X_test: np.ndarray,
    demo_test: pd.DataFrame,
    continuous: str = "age",
    categorical: str = "sex",
    alpha: float = 100.0,
    C: float = 1.0,
) -> dict[str, float]:
    """Train a Ridge regressor and a logistic classifier on one set, score them on another.

    Used both ways: train on synthetic samples and test on real subjects (TSTR), or train on
    real subjects and test on synthetic samples (TRTS). No scaler is fitted, on purpose: a
    scaler fitted on synthetic data would hide a scale mismatch with real data.

    Parameters
    ----------
    X_train, X_test : ndarray, shape (n, n_features)
    demo_train, demo_test : DataFrame, one row per row of the matching ``X``
    continuous : str
        Column predicted by ``Ridge(alpha)``, scored by RMSE in its own unit (years for age).
    categorical : str
        Column predicted by ``LogisticRegression(C)``, scored by accuracy.
    alpha, C : float
        Regularisation of the two models.

    Returns
    -------
    dict
        ``{continuous}_rmse``, ``{categorical}_accuracy`` and their null models:
        ``{continuous}_rmse_null`` (predicting the training mean) and
        ``{categorical}_accuracy_null`` (predicting the training majority level).
    """
    X_train, X_test = _as_2d("X_train", X_train), _as_2d("X_test", X_test)
    if X_train.shape[1] != X_test.shape[1]:
        raise ValueError(f"X_train has {X_train.shape[1]} features, X_test {X_test.shape[1]}")
    for name, X, demo in (("train", X_train, demo_train), ("test", X_test, demo_test)):
        if len(X) != len(demo):
            raise ValueError(f"X_{name} has {len(X)} rows but demo_{name} has {len(demo)}")
        _check_columns(demo, [continuous, categorical])
    y_tr = demo_train[continuous].to_numpy(dtype=float)
    y_te = demo_test[continuous].to_numpy(dtype=float)
    reg = Ridge(alpha=alpha).fit(X_train, y_tr)
    c_tr = demo_train[categorical].astype(str).to_numpy()
    c_te = demo_test[categorical].astype(str).to_numpy()
    if len(np.unique(c_tr)) < 2:
        raise DataError(f"the training set has one {categorical!r} level only ({c_tr[0]!r})",
                        expected="at least two levels to train a classifier")
    clf = LogisticRegression(C=C, max_iter=5000).fit(X_train, c_tr)
    levels, counts = np.unique(c_tr, return_counts=True)
    return {
        f"{continuous}_rmse": float(np.sqrt(mean_squared_error(y_te, reg.predict(X_test)))),
        f"{continuous}_rmse_null": float(np.sqrt(np.mean((y_te - y_tr.mean()) ** 2))),
        f"{categorical}_accuracy": float(accuracy_score(c_te, clf.predict(X_test))),
        f"{categorical}_accuracy_null": float(np.mean(c_te == levels[np.argmax(counts)])),
    }


def group_difference_agreement(
    X_real: np.ndarray,
    groups_real: Sequence[Any],
    X_synth: np.ndarray,
    groups_synth: Sequence[Any],
    a: str = "ASD",
    b: str = "TC",
) -> dict[str, float]:
    """Compare the group-mean difference map ``mean(a) - mean(b)`` of real and synthetic data.

    Parameters
    ----------
    X_real : ndarray, shape (n_real, n_features)
    groups_real : sequence, n_real labels
    X_synth : ndarray, shape (n_synth, n_features)
    groups_synth : sequence, n_synth labels
    a, b : str
        The two groups; the difference is ``a`` minus ``b``.

    Returns
    -------
    dict
        ``corr`` (Pearson r between the two difference maps), ``rmse`` (RMS of their
        difference, the paper's error of the synthetic difference), ``real_rms`` and
        ``synth_rms`` (RMS magnitude of each map).
    """
    maps = []
    for name, X, groups in (("real", X_real, groups_real), ("synth", X_synth, groups_synth)):
        X = _as_2d(f"X_{name}", X)
        groups = np.asarray(groups, dtype=str)
        if len(groups) != len(X):
            raise ValueError(f"X_{name} has {len(X)} rows but groups_{name} has {len(groups)}")
        for g in (a, b):
            if not np.any(groups == g):
                raise DataError(f"no {name} rows in group {g!r}",
                                expected=f"rows of both {a!r} and {b!r}; got "
                                         f"{sorted(set(groups))}")
        maps.append(X[groups == a].mean(axis=0) - X[groups == b].mean(axis=0))
    real, synth = maps
    if real.shape != synth.shape:
        raise ValueError(f"real and synthetic data have {real.size} and {synth.size} features")
    return {"corr": float(np.corrcoef(real, synth)[0, 1]),
            "rmse": float(np.sqrt(np.mean((real - synth) ** 2))),
            "real_rms": float(np.sqrt(np.mean(real ** 2))),
            "synth_rms": float(np.sqrt(np.mean(synth ** 2)))}


def site_stratified_folds(
    participants: pd.DataFrame,
    target: str,
    n_splits: int = 5,
    seed: int = 0,
    site: str = "site",
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified k-fold over the combined ``target × site`` labels, shuffled by ``seed``.

    Every (site, target) combination is spread evenly over the folds, so each test fold holds
    every site and both diagnoses in their overall proportions.

    Parameters
    ----------
    participants : DataFrame, one row per subject
    target : str
        Column stratified on together with ``site`` (e.g. ``"diagnosis"``).
    n_splits : int
    seed : int
    site : str
        Site column.

    Returns
    -------
    list of (train_idx, test_idx)
        Positional row indices; every row is in exactly one test fold.

    Raises
    ------
    DataError
        When a (site, target) combination has fewer than ``n_splits`` subjects.
    """
    _check_columns(participants, [target, site])
    labels = (participants[site].astype(str) + "|" + participants[target].astype(str)).to_numpy()
    combos, counts = np.unique(labels, return_counts=True)
    if counts.min() < n_splits:
        small = {c: int(n) for c, n in zip(combos, counts, strict=True) if n < n_splits}
        raise DataError(f"(site|{target}) combination(s) {small} have fewer subjects than "
                        f"folds", expected=f"at least n_splits={n_splits} subjects each")
    cv = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return [(train, test) for train, test in cv.split(np.zeros(len(labels)), labels)]


def demographic_matrix(
    train: pd.DataFrame,
    test: pd.DataFrame,
    continuous: Sequence[str] = ("age",),
    categorical: Sequence[str] = ("sex", "site"),
) -> tuple[np.ndarray, np.ndarray]:
    """Encode demographics as numbers, fitted on ``train`` only.

    Continuous columns are standardised with the training mean and sd; categorical ones are
    one-hot encoded with the training levels (a level unseen in training encodes as zeros).

    Returns
    -------
    D_train : ndarray, shape (n_train, n_encoded)
    D_test : ndarray, shape (n_test, n_encoded)
    """
    _check_columns(train, [*continuous, *categorical])
    _check_columns(test, [*continuous, *categorical])
    enc = ColumnTransformer([
        ("continuous", StandardScaler(), list(continuous)),
        ("categorical", OneHotEncoder(handle_unknown="ignore", sparse_output=False),
         list(categorical)),
    ])
    cols = [*continuous, *categorical]
    cast = {c: str for c in categorical}
    D_train = enc.fit_transform(train[cols].astype(cast))
    return np.asarray(D_train, dtype=float), np.asarray(enc.transform(test[cols].astype(cast)),
                                                        dtype=float)


def _classifier(C: float, seed: int):
    return make_pipeline(StandardScaler(), LogisticRegression(
        C=C, class_weight="balanced", max_iter=5000, random_state=seed))


def diagnosis_fold_scores(
    X_train: np.ndarray,
    X_test: np.ndarray,
    Z_train: np.ndarray,
    Z_test: np.ndarray,
    demo_train: pd.DataFrame,
    demo_test: pd.DataFrame,
    target: str = "diagnosis",
    continuous: Sequence[str] = ("age",),
    categorical: Sequence[str] = ("sex", "site"),
    C: float = 1.0,
    seed: int = 0,
) -> dict[str, float]:
    """Balanced accuracy of one fold's diagnosis decoders, one per feature set.

    Each decoder is standardisation + class-balanced ``LogisticRegression(C)`` fitted on the
    training rows. The feature sets are :data:`DIAGNOSIS_FEATURES`: connectivity ``X``,
    latents ``Z``, latents plus encoded demographics (:func:`demographic_matrix`), and the
    demographics alone (how much the confounds predict by themselves).

    Parameters
    ----------
    X_train, X_test : ndarray, shape (n, n_features)
    Z_train, Z_test : ndarray, shape (n, latent_dim)
        Latents of the same rows from a VAE fitted on the training rows only.
    demo_train, demo_test : DataFrame
        Demographics and ``target`` of the same rows.

    Returns
    -------
    dict
        ``{feature set: balanced accuracy on the test rows}``.
    """
    _check_columns(demo_train, [target])
    _check_columns(demo_test, [target])
    y_tr = demo_train[target].astype(str).to_numpy()
    y_te = demo_test[target].astype(str).to_numpy()
    D_tr, D_te = demographic_matrix(demo_train, demo_test, continuous, categorical)
    sets = {
        "connectivity": (_as_2d("X_train", X_train), _as_2d("X_test", X_test)),
        "latents": (_as_2d("Z_train", Z_train), _as_2d("Z_test", Z_test)),
        "latents+demographics": (np.hstack([Z_train, D_tr]), np.hstack([Z_test, D_te])),
        "demographics": (D_tr, D_te),
    }
    out = {}
    for name in DIAGNOSIS_FEATURES:
        F_tr, F_te = sets[name]
        pred = _classifier(C, seed).fit(F_tr, y_tr).predict(F_te)
        out[name] = float(balanced_accuracy_score(y_te, pred))
    return out


def diagnosis_scores(
    X: np.ndarray,
    participants: pd.DataFrame,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    make_vae: Callable[[], LatentModel],
    target: str = "diagnosis",
    continuous: Sequence[str] = ("age",),
    categorical: Sequence[str] = ("sex", "site"),
    C: float = 1.0,
    seed: int = 0,
) -> dict[str, Any]:
    """Cross-validated diagnosis balanced accuracy from connectivity, latents and both.

    For every fold a fresh VAE from ``make_vae()`` is fitted on the training rows (and their
    ``continuous + categorical`` demographics) only; both folds' latents come from it.

    Parameters
    ----------
    X : ndarray, shape (n_subjects, n_features)
    participants : DataFrame, n_subjects rows
        Demographics and ``target``.
    folds : sequence of (train_idx, test_idx)
        Positional indices, e.g. from :func:`site_stratified_folds`.
    make_vae : callable
        Returns an unfitted model with ``fit(X, demographics)`` and ``transform(X)``.

    Returns
    -------
    dict
        ``folds``: per-fold ``{feature set: balanced accuracy}``; ``mean`` and ``sd`` (ddof=1,
        NaN for a single fold) over folds per feature set.
    """
    X = _as_2d("X", X)
    if len(participants) != len(X):
        raise ValueError(f"X has {len(X)} rows but participants has {len(participants)}")
    demo_cols = [*continuous, *categorical]
    per_fold = []
    for train, test in folds:
        vae = make_vae()
        vae.fit(X[train], participants.iloc[train][demo_cols])
        per_fold.append(diagnosis_fold_scores(
            X[train], X[test], vae.transform(X[train]), vae.transform(X[test]),
            participants.iloc[train], participants.iloc[test], target=target,
            continuous=continuous, categorical=categorical, C=C, seed=seed))
    table = pd.DataFrame(per_fold, columns=list(DIAGNOSIS_FEATURES))
    return {"folds": per_fold,
            "mean": {k: float(v) for k, v in table.mean().items()},
            "sd": {k: float(v) for k, v in table.std(ddof=1).items()}}
