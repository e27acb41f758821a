"""Decoders on per-epoch features and their cross-validated evaluation.

Each entry of :data:`DECODERS` builds an unfitted scikit-learn pipeline from its config model;
:func:`run_decoder` evaluates one under the configured protocols and returns the contents of
``metrics.json`` and ``predictions.csv``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel
from sklearn.base import clone
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from .config import (
    AcmMdmConfig,
    AcmTsSvmConfig,
    BandpowerLrConfig,
    CspLdaConfig,
    DiffusionLFTConfig,
    EvaluationConfig,
    TokenTransformerConfig,
    TsLrConfig,
)
from .errors import ConfigError, DataError
from .evaluation import cross_validate
from .io import FeatureSet
from .versions import library_versions

if TYPE_CHECKING:
    from .acm import ACMClassifier

# pyriemann (which imports torch and matplotlib) and the ACM module are imported by the
# factories that need them: the token and diffusion decode jobs never pay for them.


def make_ts_lr(params: TsLrConfig, seed: int) -> Pipeline:
    """Tangent space at the training set's mean (``metric``) → logistic regression.

    Input: covariance matrices, shape (n_epochs, n_channels, n_channels).
    """
    from pyriemann.tangentspace import TangentSpace

    return Pipeline([
        ("tangentspace", TangentSpace(metric=params.metric)),
        ("logreg", LogisticRegression(C=params.C, max_iter=1000, random_state=seed)),
    ])


def make_csp_lda(params: CspLdaConfig, seed: int) -> Pipeline:
    """CSP (log-variance of ``n_components`` filters; multiclass by joint diagonalisation) → LDA.

    Input: covariance matrices, shape (n_epochs, n_channels, n_channels). CSP keeps at most
    ``n_channels`` filters. Both steps are deterministic; ``seed`` is accepted for a uniform
    factory signature.
    """
    from pyriemann.spatialfilters import CSP

    return Pipeline([
        ("csp", CSP(nfilter=params.n_components, log=True)),
        ("lda", LinearDiscriminantAnalysis()),
    ])


def _acm_kwargs(params: AcmMdmConfig, seed: int) -> dict[str, Any]:
    return {
        "selection": params.selection, "orders": tuple(params.orders),
        "lags": tuple(params.lags), "order": params.order, "lag": params.lag,
        "max_order": params.max_order, "max_lag": params.max_lag,
        "inner_folds": params.inner_folds, "estimator": params.estimator,
        "metric": params.metric,
        "scoring": None if params.scoring == "auto" else params.scoring,
        "random_state": seed,
    }


def make_acm_ts_svm(params: AcmTsSvmConfig, seed: int) -> ACMClassifier:
    """Augmented covariance → tangent space → SVM, (order, lag, C, kernel) chosen per fold.

    Input: epoch signals, shape (n_epochs, n_channels, n_times).
    """
    from .acm import ACMClassifier

    return ACMClassifier(classifier="ts_svm", Cs=tuple(params.Cs),
                         kernels=tuple(params.kernels), **_acm_kwargs(params, seed))


def make_acm_mdm(params: AcmMdmConfig, seed: int) -> ACMClassifier:
    """Augmented covariance → MDM, (order, lag) chosen per fold.

    Input: epoch signals, shape (n_epochs, n_channels, n_times).
    """
    from .acm import ACMClassifier

    return ACMClassifier(classifier="mdm", **_acm_kwargs(params, seed))


def make_bandpower_lr(params: BandpowerLrConfig, seed: int) -> Pipeline:
    """Standardisation (training-fold mean and sd) → logistic regression.

    Input: log band powers, shape (n_epochs, n_channels · n_bands). With more than two
    classes the lbfgs solver fits the multinomial (softmax) loss, so the probabilities are
    jointly normalised rather than one-vs-rest.
    """
    return Pipeline([
        ("scale", StandardScaler()),
        ("logreg", LogisticRegression(C=params.C, max_iter=5000, random_state=seed)),
    ])


def make_token_transformer(params: TokenTransformerConfig, seed: int) -> Any:
    """Token Transformer on token ids; the workflow sets ``codebook`` from the tokenizer."""
    from .token_decoding import TokenTransformerClassifier  # torch only when used

    return TokenTransformerClassifier(
        model=params.model.model_dump(),
        pretraining=None if params.pretraining is None else params.pretraining.trainer_fields(),
        training=params.training.trainer_fields(), label_smoothing=params.label_smoothing,
        class_weight=params.class_weight, monitor=params.monitor, seed=seed)


def make_diffusion_lft(params: DiffusionLFTConfig, seed: int) -> Any:
    """Latent fusion Transformer on diffusion representations (the backbone is frozen)."""
    from .diffusion_decoding import LatentFusionClassifier  # torch only when used

    return LatentFusionClassifier(
        model=params.model.model_dump(), training=params.training.trainer_fields(),
        label_smoothing=params.label_smoothing, class_weight=params.class_weight,
        monitor=params.monitor, seed=seed)


DECODERS: dict[str, Callable[[Any, int], Any]] = {
    "ts_lr": make_ts_lr,
    "csp_lda": make_csp_lda,
    "acm_ts_svm": make_acm_ts_svm,
    "acm_mdm": make_acm_mdm,
    "bandpower_lr": make_bandpower_lr,
    "token_transformer": make_token_transformer,
    "diffusion_lft": make_diffusion_lft,
}

#: Config model of each decoder's parameters (used to accept plain dicts).
PARAMS: dict[str, type[BaseModel]] = {
    "ts_lr": TsLrConfig, "csp_lda": CspLdaConfig,
    "acm_ts_svm": AcmTsSvmConfig, "acm_mdm": AcmMdmConfig,
    "bandpower_lr": BandpowerLrConfig,
    "token_transformer": TokenTransformerConfig,
    "diffusion_lft": DiffusionLFTConfig,
}


def _factory(name: str) -> Callable[[Any, int], Pipeline]:
    if name not in DECODERS:
        raise ConfigError(
            f"unknown decoder '{name}'; valid decoders: {', '.join(sorted(DECODERS))}"
        )
    return DECODERS[name]


def make_decoder(name: str, params: BaseModel | dict | None, seed: int) -> Pipeline:
    """Build the unfitted pipeline ``name`` with ``params`` (a config model, dict or None)."""
    factory = _factory(name)
    return factory(_params(name, params), seed)


def _params(name: str, params: BaseModel | dict | None) -> BaseModel:
    model = PARAMS[name]
    if params is None:
        return model()
    if isinstance(params, dict):
        return model.model_validate(params)
    return params


def _check_features(features: FeatureSet) -> None:
    n = len(features.X)
    lengths = {"y": len(features.y), "session": len(features.session), "run": len(features.run)}
    bad = {k: v for k, v in lengths.items() if v != n}
    if bad:
        raise DataError(
            f"feature set has {n} epochs but {bad}",
            expected="X, y, session and run of equal length",
        )
    present = np.unique(features.y)
    if len(present) < 2:
        raise DataError(
            f"only {len(present)} class present among {n} epochs "
            f"({[features.classes[k] for k in present]})",
            expected=f"epochs of at least two of the classes {features.classes}",
        )


def run_decoder(
    name: str,
    params: BaseModel | dict | None,
    features: FeatureSet,
    evaluation: EvaluationConfig,
    seed: int,
    *,
    subject: str,
    dataset: str,
    estimator_params: dict[str, Any] | None = None,
    pretraining: str | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Cross-validate decoder ``name`` on one subject's features.

    Parameters
    ----------
    name : str
        A key of :data:`DECODERS`.
    params : pydantic model, dict or None
        The decoder's parameters (``TsLrConfig``, ``CspLdaConfig``); None for defaults.
    features : FeatureSet
        ``X`` of shape (n_epochs, n_channels, n_channels) with ``y``, ``session``, ``run``.
    evaluation : EvaluationConfig
        Protocols, ``n_folds`` and ``shuffle``.
    seed : int
        Seed of the splits and of the decoder.
    subject, dataset : str
        Recorded in the metrics and in error messages.
    estimator_params : dict, optional
        Set on the decoder with ``set_params`` before cross-validation (e.g. the tokenizer's
        ``codebook`` for ``token_transformer``).
    pretraining : str, optional
        What the frozen pretrained model the features come from saw
        (:func:`brainmill.evaluation.pretraining_note`); written into every protocol's
        description.

    Returns
    -------
    metrics : dict
        Contents of ``metrics.json``.
    predictions : DataFrame
        Contents of ``predictions.csv``.

    Raises
    ------
    ConfigError
        For an unknown decoder name.
    DataError
        When the features cannot support the protocols (e.g. a class rarer than ``n_folds``
        in a session); names the subject.
    """
    factory = _factory(name)
    params = _params(name, params)
    template = factory(params, seed)
    if estimator_params:
        template.set_params(**estimator_params)
    # a decoder may bound its own cost with fewer protocols than the dataset's
    own_protocols = getattr(params, "protocols", None)
    if own_protocols:
        evaluation = evaluation.model_copy(update={"protocols": list(own_protocols)})
    try:
        _check_features(features)
        protocols, predictions = cross_validate(
            lambda: clone(template),
            features.X,
            features.y,
            features.session,
            features.run,
            evaluation.protocols,
            evaluation.n_folds,
            evaluation.shuffle,
            seed,
            classes=features.classes,
            pretraining=pretraining,
        )
    except DataError as err:
        if err.subject is not None:
            raise
        raise DataError(
            err.problem, file=err.file, subject=subject, expected=err.expected, hint=err.hint
        ) from err
    extra: dict[str, Any] = {}
    if factory in (make_acm_ts_svm, make_acm_mdm):
        from .acm import tangent_projection

        infos = [f.get("fit_info", {}) for res in protocols.values() for f in res.get("folds", [])]
        extra["tangent_projection"] = tangent_projection(
            features.X, features.y, infos, template.estimator, template.metric)
    metrics = {
        "dataset": dataset,
        "subject": str(subject),
        "decoder": name,
        "params": params.model_dump(mode="json"),
        "classes": list(features.classes),
        "n_epochs": int(len(features.y)),
        "seed": int(seed),
        "protocols": protocols,
        "versions": library_versions(["sklearn", "pyriemann", "numpy"]),
        **extra,
    }
    return metrics, predictions
