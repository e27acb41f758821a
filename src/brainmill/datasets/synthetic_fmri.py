"""Embedded synthetic resting-state ROI time series with known demographic effects (numpy only).

Each subject's ROI signals are a stationary Gaussian AR(1) process whose correlation matrix is

    C(subject) = B + age_effect · z_age · A_age + sex_effect · s · A_sex
                   + site_effect · c_site · A_site + diagnosis_effect · d · A_diagnosis

where ``B`` is a block network structure (strong within-network, weak between-network
correlation), ``A_k`` is the symmetric 0/1 adjacency of effect ``k``'s edges, ``z_age`` is
age standardised by the age distribution (uniform 8-30 y: mean 19, sd 22/√12), ``s`` is
+½ for M and −½ for F, ``d`` is +½ for ASD and −½ for TC, and ``c_site`` is spread evenly over
[−½, ½] by site order (±½ for two sites). So ``C(ASD) − C(TC) = diagnosis_effect`` on the
diagnosis edges, ``C(M) − C(F) = sex_effect`` on the sex edges, and one standard deviation of
age adds ``age_effect`` on the age edges; every other edge equals ``B``.

The effect edge sets are disjoint and each is a matching (no two edges share an ROI); the age
edges use ROIs the other effects do not touch. With these, the perturbation of ``B`` has
spectral norm at most ``max(|age_effect|·√3, (|sex|+|site|+|diagnosis|)/2)``, which must stay
below the smallest eigenvalue of ``B`` so that every ``C`` is a valid correlation matrix
(checked when the spec is used). ``synthetic_effect_edges`` returns the edge sets.

Each subject also has 6 motion confounds (``trans_x/y/z`` in mm, ``rot_x/y/z`` in rad), smooth
random walks whose amplitude scales with the subject's ``mean_fd``; ``motion_effect`` mixes
them into the ROI signals (a motion artefact that confound regression removes).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .fmri import ROITimeSeries

AGE_RANGE = (8.0, 30.0)
AGE_MEAN = sum(AGE_RANGE) / 2
AGE_SD = (AGE_RANGE[1] - AGE_RANGE[0]) / np.sqrt(12.0)
#: largest |standardised age| of a uniform age distribution: √3.
AGE_Z_MAX = (AGE_RANGE[1] - AGE_MEAN) / AGE_SD
EFFECTS = ("age", "sex", "site", "diagnosis")
MOTION_NAMES = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]
#: lag-1 autocorrelation of the ROI signals (slow BOLD fluctuations at TR ≈ 2 s).
AR1 = 0.5
WITHIN_NETWORK = 0.35
#: between-network correlations are drawn uniformly from this range.
BETWEEN_NETWORK = (-0.05, 0.12)
#: smallest eigenvalue any subject's correlation matrix keeps.
MIN_EIGENVALUE = 0.05
#: mean FD (mm) at which the motion artefact has amplitude ``motion_effect``.
FD_REFERENCE = 0.2


@dataclass(frozen=True)
class SyntheticFMRISpec:
    """Size, seed and effect sizes of the synthetic fMRI dataset.

    Attributes
    ----------
    n_subjects, n_rois, n_timepoints : int
    tr : float
        Repetition time (s).
    sites : tuple of str
        Subjects are split evenly over the sites, in blocks of consecutive labels.
    seed : int
        Everything (demographics, network, effect edges, signals) follows from it.
    age_effect : float
        Correlation change per standard deviation of age on the age edges.
    sex_effect, diagnosis_effect : float
        Correlation difference M − F (ASD − TC) on the sex (diagnosis) edges.
    site_effect : float
        Correlation difference between the last and the first site on the site edges.
    motion_effect : float
        Amplitude (in units of the unit-variance ROI signal) of the motion artefact at a mean
        FD of 0.2 mm; 0 leaves the confounds unrelated to the signals.
    """

    n_subjects: int = 40
    n_rois: int = 30
    n_timepoints: int = 150
    tr: float = 2.0
    sites: tuple[str, ...] = ("A", "B")
    seed: int = 0
    age_effect: float = 0.25
    sex_effect: float = 0.2
    site_effect: float = 0.15
    diagnosis_effect: float = 0.25
    motion_effect: float = 0.0

    def __post_init__(self) -> None:
        if not self.sites or len(set(self.sites)) != len(self.sites):
            raise ValueError(f"sites must be distinct names, got {self.sites}")
        if self.n_subjects < 2 * len(self.sites):
            raise ValueError(f"n_subjects ({self.n_subjects}) must be at least 2 per site so "
                             "that every site holds both diagnoses")
        if self.n_rois < 10:
            raise ValueError(f"n_rois must be at least 10, got {self.n_rois}")
        if self.n_timepoints < 2:
            raise ValueError(f"n_timepoints must be at least 2, got {self.n_timepoints}")
        if not self.tr > 0:
            raise ValueError(f"tr must be positive, got {self.tr}")


def _rng(spec: SyntheticFMRISpec, *stream: int) -> np.random.Generator:
    return np.random.default_rng([spec.seed, *stream])


@functools.lru_cache(maxsize=16)
def _participants(spec: SyntheticFMRISpec) -> pd.DataFrame:
    rng = _rng(spec, 0)
    n = spec.n_subjects
    site_index = np.arange(n) * len(spec.sites) // n  # contiguous blocks
    diagnosis = np.empty(n, dtype=object)
    sex = np.empty(n, dtype=object)
    for s in range(len(spec.sites)):
        members = np.flatnonzero(site_index == s)
        order = rng.permutation(members)
        half = len(members) // 2
        diagnosis[order[:half]] = "ASD"
        diagnosis[order[half:]] = "TC"
        sex_order = rng.permutation(members)
        sex[sex_order[: (len(members) + 1) // 2]] = "M"
        sex[sex_order[(len(members) + 1) // 2:]] = "F"
    age = np.round(rng.uniform(*AGE_RANGE, size=n), 2)
    mean_fd = np.clip(rng.lognormal(np.log(0.15), 0.4, size=n), 0.03, 0.45)
    movers = rng.choice(n, size=max(1, round(0.05 * n)), replace=False)
    mean_fd[movers] = rng.uniform(0.55, 0.9, size=len(movers))
    labels = [str(i + 1) for i in range(n)]
    return pd.DataFrame(
        {
            "participant_id": [f"sub-{label}" for label in labels],
            "site": [spec.sites[i] for i in site_index],
            "age": age,
            "sex": sex.astype(str),
            "diagnosis": diagnosis.astype(str),
            "mean_fd": np.round(mean_fd, 4),
        },
        index=pd.Index(labels, name="subject"),
    )


def synthetic_participants(spec: SyntheticFMRISpec) -> pd.DataFrame:
    """Demographics of the synthetic subjects.

    Returns
    -------
    DataFrame
        Index ``subject`` ``"1"`` … ``"N"``; columns participant_id (``sub-1``), site
        (blocks of consecutive subjects), age (uniform 8-30 y), sex (M/F, balanced within
        site), diagnosis (ASD/TC, balanced within site), mean_fd (mm, lognormal around
        0.15, with 5 % of the subjects (at least one) between 0.55 and 0.9).
    """
    return _participants(spec).copy()


def _matchings(nodes: np.ndarray, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``count`` edge-disjoint perfect matchings of ``nodes`` (even count), each (k, 2).

    Rounds of the circle method of round-robin scheduling, on shuffled nodes.
    """
    nodes = rng.permutation(nodes)
    m = len(nodes)
    out = []
    for r in range(count):
        ring = np.concatenate([[nodes[0]], np.roll(nodes[1:], r)])
        pairs = np.stack([ring[: m // 2], ring[m // 2:][::-1]], axis=1)
        out.append(np.sort(pairs, axis=1))
    return out


@functools.lru_cache(maxsize=16)
def _structure(spec: SyntheticFMRISpec) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Base correlation ``B`` (n_rois, n_rois) and each effect's edges as (k, 2) ROI pairs."""
    rng = _rng(spec, 1)
    r = spec.n_rois
    n_networks = int(np.clip(r // 6, 2, 7))
    network = np.arange(r) * n_networks // r
    between = rng.uniform(*BETWEEN_NETWORK, size=(n_networks, n_networks))
    between = np.triu(between, 1) + np.triu(between, 1).T
    base = between[network][:, network]
    base[network[:, None] == network[None, :]] = WITHIN_NETWORK
    np.fill_diagonal(base, 1.0)

    rois = rng.permutation(r)
    n_age = 2 * max(1, round(0.2 * r))  # 40 % of the ROIs carry the age edges
    age_nodes, other = rois[:n_age], rois[n_age:]
    other = other[: len(other) // 2 * 2]
    edges = {"age": _matchings(age_nodes, 1, rng)[0]}
    for name, pairs in zip(EFFECTS[1:], _matchings(other, 3, rng), strict=True):
        edges[name] = pairs
    for pairs in edges.values():
        pairs.setflags(write=False)
    base.setflags(write=False)

    bound = max(abs(spec.age_effect) * AGE_Z_MAX,
                (abs(spec.sex_effect) + abs(spec.site_effect) + abs(spec.diagnosis_effect)) / 2)
    lowest = float(np.linalg.eigvalsh(base)[0])
    if bound > lowest - MIN_EIGENVALUE:
        raise ValueError(
            f"effects too large: they can move a correlation matrix by {bound:.3f} but the "
            f"network structure's smallest eigenvalue is {lowest:.3f}; keep |age_effect|·√3 "
            f"and (|sex_effect| + |site_effect| + |diagnosis_effect|)/2 below "
            f"{lowest - MIN_EIGENVALUE:.3f}")
    return base, edges


def synthetic_effect_edges(spec: SyntheticFMRISpec) -> dict[str, np.ndarray]:
    """Which edges carry each effect.

    Returns
    -------
    dict
        ``{"age", "sex", "site", "diagnosis"}`` → boolean mask of shape (n_edges,), in the
        edge order of :func:`brainmill.features.connectivity.upper_triangle` (that of
        nilearn's vectorised connectivity). The masks are disjoint.
    """
    _, edges = _structure(spec)
    rows, cols = np.tril_indices(spec.n_rois, -1)  # upper_triangle's order: (cols, rows)
    position = {(int(c), int(r)): i for i, (r, c) in enumerate(zip(rows, cols, strict=True))}
    masks = {}
    for name, pairs in edges.items():
        mask = np.zeros(len(rows), dtype=bool)
        mask[[position[(int(a), int(b))] for a, b in pairs]] = True
        masks[name] = mask
    return masks


def _covariates(spec: SyntheticFMRISpec, row: pd.Series) -> dict[str, float]:
    n_sites = len(spec.sites)
    site = spec.sites.index(row["site"])
    return {
        "age": (row["age"] - AGE_MEAN) / AGE_SD,
        "sex": 0.5 if row["sex"] == "M" else -0.5,
        "site": 0.0 if n_sites == 1 else site / (n_sites - 1) - 0.5,
        "diagnosis": 0.5 if row["diagnosis"] == "ASD" else -0.5,
    }


def synthetic_true_correlation(spec: SyntheticFMRISpec, subject: str) -> np.ndarray:
    """The correlation matrix a subject's signals are drawn from, shape (n_rois, n_rois).

    Without motion artefact (``motion_effect`` adds a shared component on top).
    """
    base, edges = _structure(spec)
    participants = _participants(spec)
    if str(subject) not in participants.index:
        raise ValueError(f"subject {subject!r} is not one of '1' … '{spec.n_subjects}'")
    covariates = _covariates(spec, participants.loc[str(subject)])
    corr = base.copy()
    for name, pairs in edges.items():
        delta = getattr(spec, f"{name}_effect") * covariates[name]
        corr[pairs[:, 0], pairs[:, 1]] += delta
        corr[pairs[:, 1], pairs[:, 0]] += delta
    return corr


def _ar1(rng: np.random.Generator, n: int, width: int, phi: float,
         chol: np.ndarray | None = None) -> np.ndarray:
    """Stationary AR(1) series, shape (n, width), unit variance (covariance ``chol chol'``)."""
    shocks = rng.standard_normal((n, width))
    if chol is not None:
        shocks = shocks @ chol.T
    out = np.empty_like(shocks)
    out[0] = shocks[0]
    scale = np.sqrt(1.0 - phi**2)
    for t in range(1, n):
        out[t] = phi * out[t - 1] + scale * shocks[t]
    return out


def roi_coordinates(n_rois: int) -> np.ndarray:
    """Fixed fake MNI coordinates (mm) on a sphere of radius 60 mm around (0, −18, 18)."""
    i = np.arange(n_rois) + 0.5
    z = 1.0 - 2.0 * i / n_rois
    theta = np.pi * (1.0 + np.sqrt(5.0)) * i  # golden-angle spiral
    rho = np.sqrt(1.0 - z**2)
    unit = np.stack([rho * np.cos(theta), rho * np.sin(theta), z], axis=1)
    return np.round(unit * 60.0 + np.array([0.0, -18.0, 18.0]), 2)


def synthetic_fmri_subject(spec: SyntheticFMRISpec, subject: str) -> ROITimeSeries:
    """One synthetic subject's ROI time series with motion confounds.

    Parameters
    ----------
    spec : SyntheticFMRISpec
    subject : str
        ``"1"`` … ``str(spec.n_subjects)``.

    Returns
    -------
    ROITimeSeries
        ``data`` (n_timepoints, n_rois): AR(1) signals with correlation
        :func:`synthetic_true_correlation` (plus the motion artefact when
        ``motion_effect`` ≠ 0), scaled and offset per ROI like BOLD; ``confounds`` the 6
        motion parameters; ``roi_names`` ``roi01`` …; ``roi_coords`` on a sphere;
        ``source`` ``"synthetic"``. The same ``(spec, subject)`` gives the same data.
    """
    corr = synthetic_true_correlation(spec, subject)
    row = _participants(spec).loc[str(subject)]
    rng = _rng(spec, 2, int(subject))
    n, r = spec.n_timepoints, spec.n_rois
    signal = _ar1(rng, n, r, AR1, np.linalg.cholesky(corr))

    # motion: smooth (AR 0.9) parameters, translations in mm, rotations in rad (≈ mm / 50)
    motion = _ar1(rng, n, 6, 0.9) * row["mean_fd"]
    motion[:, 3:] /= 50.0
    if spec.motion_effect:
        loadings = _rng(spec, 3).standard_normal((6, r))
        loadings /= np.linalg.norm(loadings, axis=0)
        unit_motion = motion.copy()
        unit_motion[:, 3:] *= 50.0
        signal += spec.motion_effect * (unit_motion / FD_REFERENCE) @ loadings

    amplitude = rng.uniform(50.0, 150.0, size=r)
    offset = rng.uniform(500.0, 1500.0, size=r)
    width = len(str(r))
    return ROITimeSeries(
        data=signal * amplitude + offset,
        tr=spec.tr,
        roi_names=[f"roi{i + 1:0{width}d}" for i in range(r)],
        subject=str(subject),
        source="synthetic",
        confounds=motion,
        confound_names=list(MOTION_NAMES),
        roi_coords=roi_coordinates(r),
    )
