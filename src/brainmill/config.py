"""Configuration models: the single source of truth for every brainmill option.

The workflow's JSON schema (``workflow/schemas/config.schema.json``) is generated from these
models by :func:`write_schema` (``brainmill schema``), and a test keeps the two in sync. Load a
YAML file with :func:`load_config`; an unknown key fails at once with its key path and the
closest valid name.

Units follow the user, not MNE: frequencies in Hz, times in seconds, amplitudes in µV.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from .errors import ConfigError

SCHEMA_PATH = Path("workflow") / "schemas" / "config.schema.json"
_NAME_RE = re.compile(r"^[A-Za-z0-9]+$")
_DATASET_RE = re.compile(r"^[A-Za-z0-9_]+$")


def is_subject_label(label: str) -> bool:
    """True when ``label`` is a valid subject label: letters and digits only, as in BIDS."""
    return bool(_NAME_RE.match(label))


def _check_subject_pattern(value: str, also: tuple[str, ...] = ()) -> str:
    """A per-subject file pattern: a ``{subject}`` placeholder, and no others but ``also``.

    Without it every subject would read the same file; another placeholder (``{sub}``) would
    fail with a bare KeyError when the path is built.
    """
    import string

    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(value) if f is not None]
    except ValueError as err:  # an unmatched brace
        raise ValueError(f"pattern {value!r} is not a valid pattern ({err}); write "
                         "'{subject}' where the subject label goes") from None
    others = sorted({"{" + f + "}" for f in fields if f not in ("subject", *also)})
    if "subject" not in fields:
        found = f" (it has {', '.join(others)})" if others else ""
        raise ValueError(f"pattern {value!r} must contain '{{subject}}'{found}; without it "
                         "every subject would read the same file")
    if others:
        allowed = " and ".join("'{" + f + "}'" for f in ("subject", *also))
        raise ValueError(f"pattern {value!r} has placeholder(s) {', '.join(others)}; only "
                         f"{allowed} are filled in")
    return value


class StrictModel(BaseModel):
    """A model that rejects unknown keys and names the closest valid one."""

    model_config = ConfigDict(extra="forbid", validate_default=True, frozen=False)

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        valid = set(cls.model_fields)
        valid |= {f.alias for f in cls.model_fields.values() if f.alias}
        unknown = [k for k in data if k not in valid]
        if unknown:
            key = unknown[0]
            close = difflib.get_close_matches(str(key), sorted(valid), n=1, cutoff=0.5)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ValueError(
                f"unknown key '{key}'; {hint}valid keys here: {', '.join(sorted(valid))}"
            )
        return data


# --------------------------------------------------------------------------------- sources


class EEGSourceModel(StrictModel):
    """What every EEG source tells the dataset's validation about itself."""

    @property
    def n_sessions_known(self) -> int | None:
        """Sessions per subject when the config alone says (None: found when loading)."""
        return None

    def refused_protocols(self) -> dict[str, str]:
        """Evaluation protocols this source cannot run honestly: name → why, and what to do.

        ``cross_session`` needs two sessions; sources override this to add their own (Bonn's
        overlapping windows refuse ``within_session``).
        """
        if self.n_sessions_known == 1:
            return {"cross_session": "this source has a single session; remove "
                                     "'cross_session' or add sessions"}
        return {}


class SyntheticSource(EEGSourceModel):
    """The embedded synthetic motor-imagery dataset (no download).

    See :mod:`brainmill.datasets.synthetic` for the generative model and its ground truth.
    """

    kind: Literal["synthetic"] = "synthetic"
    n_sessions: int = Field(2, ge=1, le=10, description="Sessions per subject.")
    n_trials_per_class: int = Field(30, ge=2, description="Cued trials per class and session.")
    classes: list[Literal["left_hand", "right_hand", "feet"]] = Field(
        default_factory=lambda: ["left_hand", "right_hand", "feet"], min_length=2
    )
    sfreq: float = Field(250.0, gt=0, description="Sampling frequency (Hz).")
    line_freq: float = Field(50.0, gt=0, description="Power-line frequency (Hz).")
    effect_sizes: dict[str, float] = Field(
        default_factory=lambda: {"1": 0.7, "2": 0.6, "3": 0.5, "4": 0.2, "5": 0.0},
        description=(
            "Fractional mu/beta desynchronisation per subject (0 = no class information). "
            "Subjects not listed draw theirs from the seed in [0.3, 0.7]."
        ),
    )

    @field_validator("effect_sizes")
    @classmethod
    def _effect_in_range(cls, value: dict[str, float]) -> dict[str, float]:
        for sub, eff in value.items():
            if not 0.0 <= eff < 1.0:
                raise ValueError(f"effect size of subject {sub} is {eff}; expected 0 <= e < 1")
        return value

    @property
    def n_sessions_known(self) -> int | None:
        return self.n_sessions


class EEGBCISource(EEGSourceModel):
    """PhysioNet EEG Motor Movement/Imagery through :func:`mne.datasets.eegbci.load_data`."""

    kind: Literal["eegbci"] = "eegbci"
    runs: list[int] = Field(default_factory=lambda: [4, 8, 12], min_length=1)
    path: str | None = Field(
        None,
        description=(
            "Folder holding MNE-eegbci-data (MNE's cache layout). Defaults to $MNE_DATA, "
            "then MNE's configured data path."
        ),
    )
    download: bool = Field(
        False, description="Allow a download when the files are not in the cache."
    )

    @field_validator("runs")
    @classmethod
    def _runs_in_range(cls, value: list[int]) -> list[int]:
        bad = [r for r in value if not 1 <= r <= 14]
        if bad:
            raise ValueError(f"runs {bad} do not exist; PhysioNet eegmmidb has runs 1 to 14")
        return value

    @property
    def n_sessions_known(self) -> int | None:
        return 1


class FilesSource(EEGSourceModel):
    """Any recording MNE reads (EDF/BDF/GDF/FIF/BrainVision/EEGLAB), found by a pattern."""

    kind: Literal["files"] = "files"
    root: str = Field(..., description="Folder the pattern is relative to.")
    pattern: str = Field(
        ...,
        description=(
            "Glob pattern with a '{subject}' placeholder and optionally '{session}', "
            "e.g. 'sub-{subject}/ses-{session}/*.edf'."
        ),
    )
    stim_channel: str | None = Field(
        None,
        description="Read events from this stim channel instead of the annotations; "
        "event codes become descriptions such as '1', '2'.",
    )

    @field_validator("pattern")
    @classmethod
    def _has_subject(cls, value: str) -> str:
        return _check_subject_pattern(value, also=("session",))

    @property
    def n_sessions_known(self) -> int | None:
        return None if "{session}" in self.pattern else 1


class BIDSSource(EEGSourceModel):
    """A BIDS dataset read with mne-bids."""

    kind: Literal["bids"] = "bids"
    root: str
    task: str
    datatype: Literal["eeg", "meg", "ieeg"] = "eeg"
    sessions: list[str] | None = Field(None, description="Default: every session found.")
    runs: list[str] | None = Field(None, description="Default: every run found.")

    @property
    def n_sessions_known(self) -> int | None:
        return None if self.sessions is None else len(self.sessions)


class MOABBSource(EEGSourceModel):
    """A MOABB dataset (``pip install "brainmill[moabb]"``), read from its local cache."""

    kind: Literal["moabb"] = "moabb"
    dataset: str = Field(
        ..., description="Class name in moabb.datasets, e.g. 'BNCI2014_001', 'PhysionetMI'."
    )
    path: str | None = Field(
        None,
        description="Cache root MOABB/MNE download into. Defaults to $MNE_DATA, then MNE's "
        "configured data path.",
    )
    download: bool = Field(
        False, description="Allow a download when the subject is not in the cache."
    )


#: Bonn sets: Z, O healthy (eyes open, closed), N, F interictal, S ictal.
BONN_SETS = ("Z", "O", "N", "F", "S")
#: Length of every Bonn segment: 4097 samples at 173.61 Hz.
BONN_SEGMENT_S = 4097 / 173.61


class BonnSource(EEGSourceModel):
    """Bonn University epilepsy EEG (Andrzejak et al. 2001), single-channel segments.

    One pooled subject: every segment of ``sets`` is one run of session ``"1"``; windows of
    ``window_s`` every ``step_s`` inside each segment are annotated with the set letter. See
    :mod:`brainmill.datasets.bonn`.
    """

    kind: Literal["bonn"] = "bonn"
    path: str | None = Field(
        None,
        description="Folder holding bonn-epilepsy/ (or the set folders Z/ O/ N/ F/ S/ "
        "themselves). Defaults to $MNE_DATA, then MNE's configured data path.",
    )
    sets: list[Literal["Z", "O", "N", "F", "S"]] = Field(
        default_factory=lambda: list(BONN_SETS), min_length=1,
        description="Sets to load: Z, O healthy; N, F interictal; S ictal.",
    )
    segments: list[int] | None = Field(
        None, description="Segment numbers (1 to 100) of every set; default: every segment "
        "file present in each set's folder.",
    )
    window_s: float = Field(5.0, gt=0, description="Window length (s), inside one segment.")
    step_s: float = Field(2.5, gt=0, description="Step between window starts (s).")

    @field_validator("sets")
    @classmethod
    def _sets_once(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"sets are listed twice: {value}")
        return value

    @field_validator("segments")
    @classmethod
    def _segments_in_range(cls, value: list[int] | None) -> list[int] | None:
        if value is None:
            return value
        bad = [s for s in value if not 1 <= s <= 100]
        if bad or not value:
            raise ValueError(f"segments {bad or value} do not exist; each Bonn set has "
                             "segments 1 to 100")
        if len(set(value)) != len(value):
            raise ValueError(f"segments are listed twice: {value}")
        return value

    @model_validator(mode="after")
    def _window_fits(self) -> BonnSource:
        if self.window_s > BONN_SEGMENT_S:
            raise ValueError(f"window_s ({self.window_s}) is longer than a Bonn segment "
                             f"({BONN_SEGMENT_S:.3f} s)")
        return self

    @property
    def n_sessions_known(self) -> int | None:
        return 1

    def refused_protocols(self) -> dict[str, str]:
        refused = super().refused_protocols()
        if self.step_s < self.window_s:
            refused["within_session"] = (
                f"the bonn source's windows overlap (step_s {self.step_s} < window_s "
                f"{self.window_s}): a k-fold over windows would test on parts of windows it "
                "trained on; use 'grouped_kfold', which keeps every segment whole in one fold")
        return refused


class DreamsSource(EEGSourceModel):
    """DREAMS Sleep Spindles database (Devuyst et al., Univ. Mons): 30-min single-channel
    excerpts with 5-s hypnograms.

    One pooled subject whose sessions are the excerpts (``"excerpt1"`` …); 30-s windows whose
    six 5-s scores agree are annotated W, REM, N1, N2 or N3. See
    :mod:`brainmill.datasets.dreams`.
    """

    kind: Literal["dreams"] = "dreams"
    path: str | None = Field(
        None,
        description="Folder holding dreams-spindles/ (or the excerptN.txt and "
        "Hypnogram_excerptN.txt files themselves). Defaults to $MNE_DATA, then MNE's "
        "configured data path.",
    )
    excerpts: list[int] = Field(
        default_factory=lambda: [1, 2, 3, 4, 5, 6], min_length=1,
        description="Excerpt numbers; each needs excerptN.txt and Hypnogram_excerptN.txt.",
    )
    sfreq: float = Field(
        200.0, gt=0,
        description="Every excerpt is resampled to this rate (Hz) so that they concatenate "
        "(the files hold 100, 50 and 200 Hz).",
    )

    @field_validator("excerpts")
    @classmethod
    def _excerpts_in_range(cls, value: list[int]) -> list[int]:
        bad = [e for e in value if not 1 <= e <= 8]
        if bad:
            raise ValueError(f"excerpts {bad} do not exist; the DREAMS spindles database has "
                             "excerpts 1 to 8")
        if len(set(value)) != len(value):
            raise ValueError(f"excerpts are listed twice: {value}")
        return value

    @property
    def n_sessions_known(self) -> int | None:
        return len(self.excerpts)


Source = Annotated[
    SyntheticSource | EEGBCISource | FilesSource | BIDSSource | MOABBSource | BonnSource
    | DreamsSource,
    Field(discriminator="kind"),
]


# ---------------------------------------------------------------------------- preprocessing


class BadChannelConfig(StrictModel):
    """Detection of flat and noisy channels, then interpolation."""

    enabled: bool = True
    flat_uv: float = Field(
        0.5,
        ge=0,
        description="A channel whose robust standard deviation (1.4826 × MAD of the signal "
        "high-passed at 1 Hz, outside BAD annotations) is below this (µV) is flat.",
    )
    noisy_z: float = Field(
        5.0,
        gt=0,
        description="A channel whose robust z-score (median/MAD over channels) of its log "
        "robust standard deviation exceeds this is noisy. Short artefacts such as blinks do "
        "not count; epoch rejection handles them.",
    )
    interpolate: bool = Field(
        True, description="Interpolate bad channels (spherical splines); else drop them."
    )


class EpochsConfig(StrictModel):
    """Epoching on the configured events."""

    tmin: float = Field(0.5, description="Start of the window relative to the cue (s).")
    tmax: float = Field(2.5, description="End of the window relative to the cue (s).")
    baseline: tuple[float | None, float | None] | None = None
    reject_uv: float | None = Field(
        150.0, gt=0, description="Drop epochs whose peak-to-peak amplitude exceeds this (µV)."
    )
    flat_uv: float | None = Field(
        None, gt=0, description="Drop epochs whose peak-to-peak amplitude is below this (µV)."
    )

    @model_validator(mode="after")
    def _window(self) -> EpochsConfig:
        if self.tmax <= self.tmin:
            raise ValueError(f"tmax ({self.tmax}) must be greater than tmin ({self.tmin})")
        return self


class EEGPreprocessing(StrictModel):
    """EEG preprocessing with MNE, applied in the order of the fields."""

    picks: Literal["eeg"] | list[str] = "eeg"
    montage: str | None = Field(
        "standard_1005",
        description="MNE standard montage set when channels lack positions (None: leave).",
    )
    bad_channels: BadChannelConfig = Field(default_factory=BadChannelConfig)
    reference: Literal["average"] | list[str] | None = "average"
    notch: list[float] | None = Field(
        None, description="Line-noise frequencies to notch out (Hz), e.g. [50, 100]."
    )
    l_freq: float | None = Field(8.0, ge=0, description="High-pass edge (Hz).")
    h_freq: float | None = Field(30.0, gt=0, description="Low-pass edge (Hz).")
    resample: float | None = Field(None, gt=0, description="New sampling frequency (Hz).")
    epochs: EpochsConfig = Field(default_factory=EpochsConfig)

    @model_validator(mode="after")
    def _band(self) -> EEGPreprocessing:
        if self.l_freq is not None and self.h_freq is not None and self.l_freq >= self.h_freq:
            raise ValueError(f"l_freq ({self.l_freq}) must be below h_freq ({self.h_freq})")
        if self.resample is not None and self.h_freq is not None:
            if self.h_freq >= self.resample / 2:
                raise ValueError(
                    f"h_freq ({self.h_freq}) must be below the Nyquist frequency of "
                    f"resample ({self.resample / 2})"
                )
        return self


# ------------------------------------------------------------------ tokens and torch training

#: brainmill.nn registry names (kept equal to NORMS/ACTS by a test; no torch import here)
NormName = Literal["layernorm", "rmsnorm", "unified", "batch_channel", "evonorm_s0",
                   "evonorm_b0"]
ActName = Literal["gelu", "swiglu", "rational", "crrelu"]
ProtocolName = Literal["within_session", "cross_session", "grouped_kfold"]


class TrainingConfig(StrictModel):
    """One torch training run (:class:`brainmill.training.TrainConfig`; the seed is the run's)."""

    max_epochs: int = Field(20, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0, description="Peak learning rate after warm-up.")
    min_lr: float = Field(
        1e-5, ge=0, description="Learning rate at the end of the cosine decay; must not exceed "
        "lr (the TFM reference's final_lr > lr made its schedule rise).")
    warmup_fraction: float = Field(0.1, ge=0, lt=1, description="Share of steps in warm-up.")
    weight_decay: float = Field(1e-2, ge=0)
    grad_clip: float | None = Field(1.0, gt=0)
    device: str = Field("auto", description="'auto' (CUDA when present, else CPU), 'cpu', "
                        "'cuda' or 'cuda:N'.")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="'auto': bf16 autocast on CUDA, fp32 on CPU.")
    compile: bool = Field(False, description="torch.compile the model.")
    val_fraction: float = Field(
        0.0, ge=0, lt=1, description="Share of the training data held out (never the test "
        "fold) for early stopping and model selection.")
    patience: int | None = Field(None, ge=1, description="Epochs without improvement before "
                                 "stopping (needs val_fraction > 0).")
    checkpoint_every: int = Field(0, ge=0, description="Optimiser steps between checkpoints "
                                  "(0: end of each epoch).")
    ema_decay: float | None = Field(
        None, gt=0, lt=1, description="Exponential moving average of the weights with this "
        "decay (EEGDM: 0.999); validation and the saved model use it. null: none.")
    ema_every: int = Field(1, ge=1, description="Optimiser steps between EMA updates.")
    ema_start: int = Field(0, ge=0, description="Steps during which the EMA copies the weights.")

    @model_validator(mode="after")
    def _schedule(self) -> TrainingConfig:
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr ({self.min_lr}) must not exceed lr ({self.lr})")
        if self.patience is not None and self.val_fraction == 0:
            raise ValueError("patience needs a validation split: set val_fraction > 0")
        return self

    def trainer_fields(self) -> dict[str, Any]:
        """Keyword arguments of :class:`brainmill.training.TrainConfig` (without the seed)."""
        return self.model_dump()


class TokenizerModelConfig(StrictModel):
    """TFM tokenizer architecture (:class:`brainmill.models.tokenizer.TokenizerConfig`)."""

    sfreq: float = Field(200.0, gt=0, description="Signals are resampled to this (Hz).")
    n_fft: int = Field(200, ge=8, description="STFT window (samples at sfreq).")
    hop: int = Field(100, ge=1, description="STFT hop (samples); one token per hop.")
    n_bins: int = Field(100, ge=2, description="Frequency bins kept from 0 Hz.")
    band_size: int = Field(5, ge=1, description="Bins per frequency patch.")
    dim: int = Field(64, ge=8)
    n_heads: int = Field(8, ge=1)
    freq_depth: int = Field(2, ge=1)
    time_depth: int = Field(2, ge=1)
    decoder_depth: int = Field(2, ge=1, description="Reconstruction decoder blocks "
                               "(reference: 8).")
    n_codes: int = Field(8192, ge=2, description="Codebook size.")
    decay: float = Field(0.99, ge=0, lt=1)
    commitment: float = Field(1.0, ge=0)
    dead_code_threshold: float = Field(0.0, ge=0, description="Restart codes used less than "
                                       "this often per batch (0: never, as the reference).")
    mask_freq: float = Field(0.5, gt=0, lt=1)
    mask_time: float = Field(0.5, gt=0, lt=1)
    symmetric: bool = True
    dropout: float = Field(0.1, ge=0, lt=1)
    norm: NormName = "layernorm"
    act: ActName = "gelu"
    mlp_ratio: float = Field(4.0, gt=0)
    gate_groups: int = Field(4, ge=1, description="Groups of bands pooled by the gate.")
    norm_groups: int = Field(16, ge=1, description="GroupNorm groups of the conv stems.")


class TokenizerSettings(StrictModel):
    """The dataset-level tokenizer trained by rule ``train_tokenizer`` (no labels used)."""

    model: TokenizerModelConfig = Field(default_factory=TokenizerModelConfig)
    training: TrainingConfig = Field(default_factory=lambda: TrainingConfig(
        max_epochs=20, batch_size=256, val_fraction=0.1, patience=5))
    subjects: Annotated[
        list[str] | None,
        WithJsonSchema({"anyOf": [{"type": "array", "items": {"type": ["string", "integer"]}},
                                  {"type": "null"}]}),
    ] = Field(
        None, description="Subjects whose epochs train the tokenizer (default: every subject). "
        "It never sees labels; with the default it sees every subject's signals, test folds "
        "included — choose other subjects for a strictly held-out tokenizer.")

    max_windows: int | None = Field(
        None, ge=1, description="Train on at most this many single-channel windows, drawn "
        "at random with the run's seed (default: all).")

    @field_validator("subjects", mode="before")
    @classmethod
    def _subjects_as_str(cls, value: Any) -> Any:
        return [str(v) for v in value] if isinstance(value, list) else value


class TokensFeature(StrictModel):
    """Token ids per channel and frame, written by rule ``tokenize`` from the tokenizer."""

    batch_size: int = Field(512, ge=1, description="Windows per forward pass.")


class TokenTransformerModelConfig(StrictModel):
    """Token Transformer architecture; its width is the tokenizer's ``dim``."""

    n_heads: int = Field(4, ge=1)
    depth: int = Field(4, ge=1)
    mlp_ratio: float = Field(4.0, gt=0)
    dropout: float = Field(0.2, ge=0, lt=1)
    norm: NormName = "layernorm"
    act: ActName = "gelu"


class TokenTransformerConfig(StrictModel):
    """Transformer over the tokens of every channel and frame ([CLS] pooled)."""

    feature: Literal["tokens"] = "tokens"
    model: TokenTransformerModelConfig = Field(default_factory=TokenTransformerModelConfig)
    pretraining: TrainingConfig | None = Field(
        None, description="Masked-token pretraining on each training fold's tokens first.")
    training: TrainingConfig = Field(default_factory=lambda: TrainingConfig(
        max_epochs=50, batch_size=64, val_fraction=0.2, patience=10))
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    class_weight: Literal["balanced"] | dict[str, Annotated[float, Field(ge=0)]] | None = Field(
        None, description="Weights of the training loss per class, as scikit-learn's: "
        "'balanced' weighs class c by n / (n_classes · n_c) on the training data; a mapping "
        "gives a weight per class name (others weigh 1); null: none.")
    monitor: Literal["kappa", "balanced_accuracy", "loss"] = Field(
        "kappa", description="Validation score that picks the epoch (reference: Cohen's κ).")
    protocols: list[ProtocolName] | None = Field(
        None, min_length=1, description="Protocols for this decoder only (default: the "
        "dataset's evaluation.protocols); a way to bound its cost.")


class DiffusionModelConfig(StrictModel):
    """Diffusion backbone (:class:`brainmill.models.diffusion.DiffusionConfig`); the channel
    vocabulary is the dataset's channels."""

    sfreq: float = Field(100.0, gt=0, description="Epochs are resampled to this (Hz); the "
                         "reference uses 200.")
    dim: int = Field(64, ge=2, description="Residual width (reference: 128).")
    d_state: int = Field(64, ge=2, multiple_of=2, description="S4D state size (reference: 128).")
    n_layers: int = Field(8, ge=1, description="Gated SSM blocks (reference: 20).")
    cond_dim: int = Field(128, ge=1, description="Width of the step + channel conditioning.")
    norm: NormName = "layernorm"
    dropout: float = Field(0.0, ge=0, lt=1)
    ssm_init: Literal["lin", "inv"] = Field("lin", description="S4D init (reference: lin).")
    n_steps: int = Field(50, ge=1, description="Diffusion steps (reference: 50).")
    scale_uv: float = Field(100.0, gt=0, description="µV per model unit before µ-law.")
    mu: float = Field(255.0, gt=0, description="µ of the companding beyond ±1 unit.")
    p_uncond: float = Field(0.1, ge=0, lt=1, description="Training probability of the "
                            "unknown-channel embedding (lets the model serve new montages).")
    clip_sample: float | None = Field(2.0, gt=1, description="Clip predicted clean windows to "
                                      "± this many model units while sampling.")


class DiffusionSettings(StrictModel):
    """The dataset-level diffusion backbone trained by rule ``pretrain_diffusion`` (no labels:
    every channel of every epoch of the chosen subjects is one window)."""

    model: DiffusionModelConfig = Field(default_factory=DiffusionModelConfig)
    training: TrainingConfig = Field(default_factory=lambda: TrainingConfig(
        max_epochs=20, batch_size=64, lr=1e-3, weight_decay=0.0, ema_decay=0.999,
        ema_every=10, ema_start=100))
    subjects: Annotated[
        list[str] | None,
        WithJsonSchema({"anyOf": [{"type": "array", "items": {"type": ["string", "integer"]}},
                                  {"type": "null"}]}),
    ] = Field(
        None, description="Subjects whose epochs train the backbone (default: every subject). "
        "It never sees labels; with the default it sees every subject's signals, test folds "
        "included — choose other subjects for a strictly held-out backbone.")
    max_windows: int | None = Field(
        None, ge=1, description="Train on at most this many single-channel windows, drawn at "
        "random with the run's seed (default: all).")
    n_generated: int = Field(8, ge=1, description="Windows generated per channel for the "
                             "dataset report (real vs generated).")
    sampling_steps: int | None = Field(None, ge=1, description="DDIM steps when generating "
                                       "(default: every diffusion step).")

    @field_validator("subjects", mode="before")
    @classmethod
    def _subjects_as_str(cls, value: Any) -> Any:
        return [str(v) for v in value] if isinstance(value, list) else value

    #: settings of the report's samples only: changing them does not retrain the backbone
    SAMPLING_FIELDS: ClassVar[set[str]] = {"n_generated", "sampling_steps"}

    def backbone_fields(self) -> dict[str, Any]:
        """The JSON-able settings that change the trained backbone."""
        return self.model_dump(mode="json", exclude=self.SAMPLING_FIELDS)

    def sampling_fields(self) -> dict[str, Any]:
        """The JSON-able settings of the report's generated windows."""
        return self.model_dump(mode="json", include=self.SAMPLING_FIELDS)

    @model_validator(mode="after")
    def _steps(self) -> DiffusionSettings:
        if self.sampling_steps is not None and self.sampling_steps > self.model.n_steps:
            raise ValueError(f"sampling_steps ({self.sampling_steps}) exceeds model.n_steps "
                             f"({self.model.n_steps})")
        return self


class DiffusionLFTModelConfig(StrictModel):
    """Latent fusion Transformer (:class:`brainmill.models.latent_fusion.LatentFusionConfig`)."""

    dim: int = Field(64, ge=2, description="Width (reference: 128).")
    n_heads: int = Field(4, ge=1)
    n_fusion_tokens: int = Field(8, ge=1, description="Learned fusion queries (reference: 16).")
    depth: int = Field(2, ge=0, description="Classifier self-attention blocks (reference: 8).")
    mlp_ratio: float = Field(4.0, gt=0)
    dropout: float = Field(0.1, ge=0, lt=1)
    norm: NormName = "layernorm"
    act: ActName = "gelu"

    @model_validator(mode="after")
    def _heads(self) -> DiffusionLFTModelConfig:
        if self.dim % self.n_heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by n_heads ({self.n_heads})")
        return self


class DiffusionLFTConfig(StrictModel):
    """Latent fusion classifier over the frozen diffusion backbone's representations."""

    feature: Literal["diffusion"] = "diffusion"
    model: DiffusionLFTModelConfig = Field(default_factory=DiffusionLFTModelConfig)
    training: TrainingConfig = Field(default_factory=lambda: TrainingConfig(
        max_epochs=50, batch_size=64, lr=1e-3, weight_decay=0.05, val_fraction=0.2,
        patience=10))
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    class_weight: Literal["balanced"] | dict[str, Annotated[float, Field(ge=0)]] | None = Field(
        None, description="Weights of the training loss per class, as scikit-learn's: "
        "'balanced' weighs class c by n / (n_classes · n_c) on the training data; a mapping "
        "gives a weight per class name (others weigh 1); null: none.")
    monitor: Literal["kappa", "balanced_accuracy", "loss"] = Field(
        "loss", description="Validation score that picks the epoch (the reference uses κ; "
        "on small validation splits the loss selects better, see docs/diffusion.md).")
    protocols: list[ProtocolName] | None = Field(
        None, min_length=1, description="Protocols for this decoder only (default: the "
        "dataset's evaluation.protocols).")


# ------------------------------------------------------------------------------- features


class CovarianceFeature(StrictModel):
    """Per-epoch spatial covariance with pyriemann (nothing is fitted across epochs)."""

    estimator: Literal["oas", "lwf", "scm", "cov", "sch", "mcd"] = "oas"


class SignalsFeature(StrictModel):
    """The preprocessed epoch signals themselves, for decoders that build features per fold
    (the ACM decoders choose the delay embedding on each training fold)."""


def _clinical_bands() -> dict[str, tuple[float, float]]:
    # the conventional clinical EEG bands; edges are shared, each bin counts in one band
    return {"delta": (0.5, 4.0), "theta": (4.0, 8.0), "alpha": (8.0, 13.0),
            "beta": (13.0, 30.0), "gamma": (30.0, 45.0)}


class BandpowerFeature(StrictModel):
    """Per-epoch log10 band power of every channel from a Welch spectrum (nothing is fitted
    across epochs). See :mod:`brainmill.features.bandpower`."""

    bands: dict[str, tuple[float, float]] = Field(
        default_factory=_clinical_bands,
        description="Band name → [low, high) edges (Hz). Default: the clinical bands delta "
        "0.5-4, theta 4-8, alpha 8-13, beta 13-30, gamma 30-45 Hz.",
    )
    segment_s: float = Field(
        2.0, gt=0, description="Welch segment length (s); the epoch length if shorter.")
    overlap: float = Field(0.5, ge=0, lt=1, description="Overlap of Welch segments (fraction).")

    @field_validator("bands")
    @classmethod
    def _bands_ordered(cls, value: dict[str, tuple[float, float]]) -> dict:
        if not value:
            raise ValueError("bands is empty; give at least one band")
        for name, (lo, hi) in value.items():
            if not _DATASET_RE.match(name):
                raise ValueError(f"band name '{name}' must be letters, digits and '_' only")
            if not 0 <= lo < hi:
                raise ValueError(f"band '{name}' = [{lo}, {hi}]; expected 0 <= low < high")
        return value


class DiffusionFeature(StrictModel):
    """Std-pooled gate activations of the frozen diffusion backbone (rule
    ``diffusion_features``): ``(n_epochs, n_channels, n_layers, dim, n_pools)``."""

    pool_s: float = Field(1.0, gt=0, description="Std-pooling window (s; reference 1 s).")
    t: int = Field(1, ge=0, description="Diffusion step of the noiseless pass (reference: 1).")
    batch_size: int = Field(256, ge=1, description="Windows per forward pass.")


class FeaturesConfig(StrictModel):
    """Feature extractors; each writes ``features/{name}.npz``."""

    covariance: CovarianceFeature = Field(default_factory=CovarianceFeature)
    signals: SignalsFeature = Field(default_factory=SignalsFeature)
    bandpower: BandpowerFeature = Field(default_factory=BandpowerFeature)
    tokens: TokensFeature = Field(default_factory=TokensFeature)
    diffusion: DiffusionFeature = Field(default_factory=lambda: DiffusionFeature())


# ------------------------------------------------------------------------------- decoders


class TsLrConfig(StrictModel):
    """Covariance → tangent space (pyriemann) → logistic regression."""

    feature: Literal["covariance"] = "covariance"
    metric: Literal["riemann", "logeuclid", "euclid"] = "riemann"
    C: float = Field(1.0, gt=0, description="Inverse regularisation strength.")


class CspLdaConfig(StrictModel):
    """Covariance → CSP (pyriemann, log-variance) → LDA."""

    feature: Literal["covariance"] = "covariance"
    n_components: int = Field(6, ge=1)


class AcmMdmConfig(StrictModel):
    """Augmented covariance (delay embedding, Carrara & Papadopoulo) → MDM.

    ``selection``: ``grid`` (nested inner CV over ``orders × lags``), ``takens`` (lag from the
    first minimum of the average mutual information, order from Cao's false nearest
    neighbours, bounded by ``max_order``/``max_lag``) or ``fixed`` (``order``, ``lag``).
    Chosen on each training fold only.
    """

    feature: Literal["signals"] = "signals"
    selection: Literal["grid", "takens", "fixed"] = "grid"
    orders: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: list(range(1, 11)), min_length=1)
    lags: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: list(range(1, 11)), min_length=1)
    order: int = Field(4, ge=1, description="Embedding order of the fixed selection.")
    lag: int = Field(4, ge=1, description="Lag (samples) of the fixed selection.")
    max_order: int = Field(10, ge=1)
    max_lag: int = Field(10, ge=1)
    inner_folds: int = Field(3, ge=2)
    estimator: Literal["cov", "oas", "lwf"] = "cov"
    metric: Literal["riemann", "logeuclid", "euclid"] = "riemann"
    scoring: Literal["auto", "accuracy", "roc_auc", "balanced_accuracy"] = Field(
        "auto", description="Inner-CV score; auto = roc_auc for two classes, else accuracy.")


class AcmTsSvmConfig(AcmMdmConfig):
    """Augmented covariance → tangent space (pyriemann) → SVM; ``Cs`` and ``kernels`` are
    searched by the inner CV with the embedding (the paper's grid: 0.5, 1, 1.5 × linear, rbf)."""

    Cs: list[Annotated[float, Field(gt=0)]] = Field(
        default_factory=lambda: [0.5, 1.0, 1.5], min_length=1)
    kernels: list[Literal["linear", "rbf"]] = Field(
        default_factory=lambda: ["linear", "rbf"], min_length=1)


class BandpowerLrConfig(StrictModel):
    """Log band power → standardisation → multinomial logistic regression (a classical
    baseline that works on a single channel)."""

    feature: Literal["bandpower"] = "bandpower"
    C: float = Field(1.0, gt=0, description="Inverse regularisation strength.")


class DecodersConfig(StrictModel):
    """Decoders to run; set one to ``null`` to disable it."""

    ts_lr: TsLrConfig | None = Field(default_factory=TsLrConfig)
    csp_lda: CspLdaConfig | None = Field(default_factory=CspLdaConfig)
    acm_ts_svm: AcmTsSvmConfig | None = None
    acm_mdm: AcmMdmConfig | None = None
    bandpower_lr: BandpowerLrConfig | None = None
    token_transformer: TokenTransformerConfig | None = None
    diffusion_lft: DiffusionLFTConfig | None = None

    def enabled(self) -> dict[str, StrictModel]:
        """Return ``{name: params}`` of the decoders that are switched on."""
        return {name: getattr(self, name) for name in type(self).model_fields
                if getattr(self, name) is not None}


# ----------------------------------------------------------------------------- evaluation


class EvaluationConfig(StrictModel):
    """Cross-validation protocols.

    Everything fitted inside a fold (reference means, filters, scalers, networks, classifiers)
    sees that fold's training trials only. A model pretrained once per dataset without labels
    (the tokenizer, the diffusion backbone) is outside the folds: see ``metrics.json``'s
    description and ``saw_this_subject``.
    """

    protocols: list[ProtocolName] = Field(
        default_factory=lambda: ["within_session", "cross_session"], min_length=1,
        description="within_session: stratified k-fold inside each session; cross_session: "
        "leave-one-session-out; grouped_kfold: stratified k-fold over all epochs that keeps "
        "every run (e.g. a Bonn segment) whole in one fold.",
    )
    n_folds: int = Field(
        5, ge=2, description="Folds of the within-session and grouped stratified k-folds.")
    shuffle: bool = True


# ------------------------------------------------------------------------------- datasets


def _subjects_as_str(value: Any) -> Any:
    """YAML users write subject labels as numbers; labels are strings."""
    if isinstance(value, list):
        return [str(v) for v in value]
    return value


def _check_subject_labels(value: list[str]) -> list[str]:
    for sub in value:
        if not is_subject_label(sub):
            raise ValueError(f"subject label '{sub}' must be letters and digits only (as in BIDS)")
    if len(set(value)) != len(value):
        raise ValueError(f"subjects are listed twice: {value}")
    return value



class DatasetConfig(StrictModel):
    """One dataset: where its recordings come from and how each stage treats them."""

    modality: Literal["eeg"] = "eeg"
    source: Source
    # YAML users write subjects as numbers and single events as scalars; both are coerced.
    subjects: Annotated[
        list[str],
        WithJsonSchema({"type": "array", "minItems": 1,
                        "items": {"type": ["string", "integer"]}}),
    ] = Field(..., min_length=1)
    events: Annotated[
        dict[str, list[str]],
        WithJsonSchema({"type": "object", "minProperties": 2, "additionalProperties": {
            "anyOf": [{"type": ["string", "integer"]},
                      {"type": "array", "minItems": 1,
                       "items": {"type": ["string", "integer"]}}]}}),
    ] = Field(
        ...,
        min_length=2,
        description="Class name → annotation descriptions that mark it, e.g. "
        "{left_hand: [T1], right_hand: [T2]}.",
    )
    preprocessing: EEGPreprocessing = Field(default_factory=EEGPreprocessing)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    decoders: DecodersConfig = Field(default_factory=DecodersConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    tokenizer: TokenizerSettings | None = Field(
        None, description="Dataset-level TFM tokenizer (needed by the token_transformer "
        "decoder); null: none.")
    diffusion: DiffusionSettings | None = Field(
        None, description="Dataset-level diffusion backbone (needed by the diffusion_lft "
        "decoder); null: none.")

    @field_validator("subjects", mode="before")
    @classmethod
    def _subjects_as_str(cls, value: Any) -> Any:
        return _subjects_as_str(value)

    @field_validator("subjects")
    @classmethod
    def _subject_labels(cls, value: list[str]) -> list[str]:
        return _check_subject_labels(value)

    @field_validator("events", mode="before")
    @classmethod
    def _events_as_lists(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: [str(v)] if isinstance(v, str | int) else [str(x) for x in v]
                    for k, v in value.items()}
        return value

    @field_validator("events")
    @classmethod
    def _one_class_per_annotation(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        owner: dict[str, str] = {}
        for name, descriptions in value.items():
            if not descriptions:
                raise ValueError(f"class '{name}' has no annotation; list the annotation "
                                 f"descriptions that mark it, e.g. {{{name}: [T1]}}")
            for description in descriptions:
                if owner.setdefault(description, name) != name:
                    raise ValueError(f"annotation '{description}' is mapped to both classes "
                                     f"'{owner[description]}' and '{name}'; an annotation can "
                                     "mark one class only")
        return value

    def _protocol_lists(self) -> list[tuple[str, list[str]]]:
        """``(key path, protocols)`` of the dataset and of each enabled decoder naming its own."""
        lists = [("evaluation.protocols", list(self.evaluation.protocols))]
        for name, params in self.decoders.enabled().items():
            own = getattr(params, "protocols", None)
            if own:
                lists.append((f"decoders.{name}.protocols", list(own)))
        return lists

    @model_validator(mode="after")
    def _combination(self) -> DatasetConfig:
        refused = self.source.refused_protocols()
        for where, protocols in self._protocol_lists():
            for protocol in protocols:
                if protocol in refused:
                    raise ValueError(f"{where} asks for '{protocol}', but {refused[protocol]}")
        if isinstance(self.source, SyntheticSource):
            missing = set(self.events) - set(self.source.classes)
            if missing:
                raise ValueError(
                    f"events {sorted(missing)} are not classes of the synthetic source "
                    f"({self.source.classes})"
                )
        if not self.decoders.enabled():
            raise ValueError("every decoder is disabled; enable at least one")
        if self.decoders.token_transformer is not None and self.tokenizer is None:
            raise ValueError("decoders.token_transformer needs a 'tokenizer' section in the "
                             "dataset (its codebook and tokens); add 'tokenizer: {}' for the "
                             "defaults")
        if self.decoders.diffusion_lft is not None and self.diffusion is None:
            raise ValueError("decoders.diffusion_lft needs a 'diffusion' section in the dataset "
                             "(its backbone); add 'diffusion: {}' for the defaults")
        if self.diffusion is not None and self.features.diffusion.t >= self.diffusion.model.n_steps:
            raise ValueError(f"features.diffusion.t ({self.features.diffusion.t}) must be below "
                             f"diffusion.model.n_steps ({self.diffusion.model.n_steps})")
        for section in ("tokenizer", "diffusion"):
            chosen = getattr(self, section)
            if chosen is not None and chosen.subjects is not None:
                unknown = sorted(set(chosen.subjects) - set(self.subjects))
                if unknown:
                    raise ValueError(f"{section}.subjects {unknown} are not subjects of the "
                                     f"dataset ({self.subjects})")
        return self

    @property
    def diffusion_subjects(self) -> list[str]:
        """Subjects whose epochs train the diffusion backbone (default all)."""
        if self.diffusion is None:
            return []
        return list(self.diffusion.subjects or self.subjects)

    @property
    def tokenizer_subjects(self) -> list[str]:
        """Subjects whose epochs train the tokenizer (``tokenizer.subjects``, default all)."""
        if self.tokenizer is None:
            return []
        return list(self.tokenizer.subjects or self.subjects)

    @property
    def class_names(self) -> list[str]:
        """Class names in configured order (class index = position)."""
        return list(self.events)


# ------------------------------------------------------------------------------------ fMRI


class SyntheticFMRISource(StrictModel):
    """Embedded resting-state ROI time series with known demographic and group effects."""

    kind: Literal["synthetic_fmri"] = "synthetic_fmri"
    n_subjects: int = Field(40, ge=4, description="Subjects '1'..'n_subjects'.")
    n_rois: int = Field(30, ge=10)
    n_timepoints: int = Field(150, ge=10)
    tr: float = Field(2.0, gt=0, description="Repetition time (s).")
    sites: list[str] = Field(default_factory=lambda: ["A", "B"], min_length=1)
    age_effect: float = Field(0.25, ge=0, description="Correlation change per sd of age on "
                              "the age edges.")
    sex_effect: float = Field(0.2, ge=0)
    site_effect: float = Field(0.15, ge=0)
    diagnosis_effect: float = Field(0.25, ge=0)

    @model_validator(mode="after")
    def _generable(self) -> SyntheticFMRISource:
        # the generator's own checks (2 subjects per site, effects small enough to keep every
        # correlation matrix positive definite), run at config time rather than in a job
        from .datasets.synthetic_fmri import SyntheticFMRISpec, synthetic_effect_edges

        synthetic_effect_edges(SyntheticFMRISpec(
            n_subjects=self.n_subjects, n_rois=self.n_rois, n_timepoints=self.n_timepoints,
            tr=self.tr, sites=tuple(self.sites), age_effect=self.age_effect,
            sex_effect=self.sex_effect, site_effect=self.site_effect,
            diagnosis_effect=self.diagnosis_effect))
        return self

    def subject_labels(self) -> list[str]:
        return [str(i) for i in range(1, self.n_subjects + 1)]


class ABIDESource(StrictModel):
    """ABIDE I (Preprocessed Connectomes Project) CC200 ROI time series + participants.tsv."""

    kind: Literal["abide"] = "abide"
    path: str | None = Field(
        None, description="Folder holding participants.tsv and rois_cc200/ (and CC200.nii.gz "
        "for plots); default $MNE_DATA/abide-cc200.")
    sites: list[str] | None = Field(None, description="Sites to keep, e.g. [NYU, PITT]; "
                                    "default all in participants.tsv.")
    pcp_release_only: bool = Field(True, description="Drop subjects the PCP release excluded "
                                   "on quality (in_pcp_release = False).")


class ROIFilesSource(StrictModel):
    """Precomputed ROI time series, one file per subject (.1D/.tsv/.csv/.txt, optionally .gz)."""

    kind: Literal["roi_files"] = "roi_files"
    root: str = Field(..., description="Folder the patterns are relative to.")
    pattern: str = Field(..., description="File of one subject, with {subject}, e.g. "
                         "'sub-{subject}_timeseries.tsv'.")
    tr: float = Field(..., gt=0, description="Repetition time (s).")
    participants: str = Field(..., description="Participants table (TSV/CSV), relative to root.")
    id_column: str = "participant_id"
    roi_names: list[str] | None = Field(None, description="Default: the file's header.")

    @field_validator("pattern")
    @classmethod
    def _has_subject(cls, value: str) -> str:
        return _check_subject_pattern(value)


class NiftiSource(StrictModel):
    """4-D NIfTI images reduced to ROI time series by a nilearn masker over an atlas."""

    kind: Literal["nifti"] = "nifti"
    root: str = Field(..., description="Folder the patterns are relative to.")
    pattern: str = Field(..., description="Image of one subject, with {subject}.")
    atlas: str = Field(..., description="Atlas image (relative to root or absolute).")
    atlas_kind: Literal["labels", "maps"] = Field(
        "labels", description="labels: NiftiLabelsMasker (integer parcels); maps: "
        "NiftiMapsMasker (4-D probabilistic maps).")
    labels: list[str] | None = Field(None, description="ROI names; must match the atlas "
                                     "region count.")
    confounds: str | None = Field(None, description="Confounds TSV of one subject, with "
                                  "{subject}; regressed out by the masker.")
    confound_columns: list[str] | None = Field(None, description="Default: every column.")
    tr: float | None = Field(None, gt=0, description="Default: the image header's.")
    participants: str = Field(..., description="Participants table (TSV/CSV), relative to root.")
    id_column: str = "participant_id"

    @field_validator("pattern", "confounds")
    @classmethod
    def _has_subject(cls, value: str | None) -> str | None:
        return value if value is None else _check_subject_pattern(value)


FMRISource = Annotated[
    SyntheticFMRISource | ABIDESource | ROIFilesSource | NiftiSource,
    Field(discriminator="kind"),
]


class FMRICleanConfig(StrictModel):
    """nilearn ``signal.clean`` and the motion exclusion of one subject's ROI time series."""

    detrend: bool = True
    standardize: bool = Field(True, description="z-score each ROI (sample sd).")
    high_pass: float | None = Field(0.01, gt=0, description="High-pass edge (Hz).")
    low_pass: float | None = Field(0.1, gt=0, description="Low-pass edge (Hz).")
    confounds: bool = Field(True, description="Regress the subject's confounds when it has any.")
    max_mean_fd: float | None = Field(
        0.5, gt=0, description="Exclude subjects whose mean framewise displacement (mm, from "
        "the participants table) exceeds this; null: no motion exclusion.")
    min_timepoints: int = Field(50, ge=3, description="Fewer usable volumes is an error.")
    on_nan: Literal["error", "exclude"] = Field(
        "error", description="Time series with NaN rows: fail the subject's job, or exclude "
        "the subject and record why.")

    @model_validator(mode="after")
    def _band(self) -> FMRICleanConfig:
        if (self.high_pass is not None and self.low_pass is not None
                and self.high_pass >= self.low_pass):
            raise ValueError(f"high_pass ({self.high_pass}) must be below low_pass "
                             f"({self.low_pass})")
        return self


class FMRIConnectivityConfig(StrictModel):
    """Per-subject connectivity (nilearn ``ConnectivityMeasure``), upper triangle as features."""

    kind: Literal["correlation", "partial correlation", "covariance", "precision"] = Field(
        "correlation", description="Tangent space needs a group mean and is fitted inside each "
        "training fold by decode_fmri (decoding.connectivity_kind).")
    estimator: Literal["ledoit_wolf", "empirical"] = Field(
        "ledoit_wolf", description="Covariance estimator (nilearn's default is Ledoit-Wolf, "
        "which shrinks correlations slightly; 'empirical' gives Pearson correlation, as the "
        "DemoVAE reference uses).")


class VAEModelConfig(StrictModel):
    """The demographic-conditioned VAE (:class:`brainmill.models.vae.DemoVAE`)."""

    latent_dim: int = Field(30, ge=1)
    hidden: int = Field(1000, ge=1)
    variational: bool = Field(
        True, description="Reparameterised encoder + KL (held-out latents decorrelated to "
        "chance on ABIDE, BENCHMARKS.md); false: the reference's deterministic encoder with "
        "moment matching (better reconstruction, site left in held-out latents).")
    act: Literal["relu", "gelu", "swiglu", "rational", "crrelu"] = "relu"
    guidance: bool = True
    loss_weights: dict[Literal["rec", "cov", "mean", "decor", "guide", "kl"], float] = Field(
        default_factory=dict, description="Overrides of the DemoVAE loss weights.")


class VAEConfig(StrictModel):
    """The dataset-level DemoVAE (rule train_vae) and what it generates."""

    continuous: list[str] = Field(default_factory=lambda: ["age"],
                                  description="Continuous demographics (standardised).")
    categorical: list[str] = Field(default_factory=lambda: ["sex", "site"],
                                   description="Categorical demographics (one-hot).")
    group: str | None = Field(
        "diagnosis", description="A categorical column the dataset-level model is also "
        "conditioned on, so synthetic group differences (e.g. ASD − TC) can be drawn; never a "
        "VAE input when it is the decoding target.")
    model: VAEModelConfig = Field(default_factory=VAEModelConfig)
    training: TrainingConfig = Field(default_factory=lambda: TrainingConfig(
        max_epochs=100, batch_size=256, lr=1e-3, weight_decay=0.0))
    n_samples: int = Field(50, ge=2, description="Synthetic connectomes per profile.")
    profiles: list[dict[str, str | float]] | None = Field(
        None, description="Demographic profiles to generate for the report; default: every "
        "combination of the categorical levels (and group) at the mean of the continuous ones.")


class FMRIDecodingConfig(StrictModel):
    """Decode a participants column from connectivity, VAE latents, latents + demographics and
    the demographics alone."""

    target: str = Field("diagnosis", description="Participants column to predict.")
    n_folds: int = Field(5, ge=2, description="Folds stratified by target × site.")
    C: float = Field(1.0, gt=0, description="Inverse regularisation of the logistic regression.")
    connectivity_kind: Literal["correlation", "partial correlation", "tangent"] = Field(
        "correlation", description="Connectivity of the 'connectivity' feature set; tangent is "
        "fitted on each training fold.")


class FMRIDatasetConfig(StrictModel):
    """One fMRI dataset: ROI time series → cleaned → connectivity → DemoVAE and decoding."""

    modality: Literal["fmri"]
    source: FMRISource
    subjects: Annotated[
        list[str] | Literal["all"],
        WithJsonSchema({"anyOf": [{"const": "all"}, {"type": "array", "minItems": 1,
                                                     "items": {"type": ["string", "integer"]}}]}),
    ] = Field("all", description="Subject labels, or 'all' (every subject of the source).")
    preprocessing: FMRICleanConfig = Field(default_factory=FMRICleanConfig)
    connectivity: FMRIConnectivityConfig = Field(default_factory=FMRIConnectivityConfig)
    vae: VAEConfig = Field(default_factory=VAEConfig)
    decoding: FMRIDecodingConfig | None = Field(default_factory=FMRIDecodingConfig)

    @field_validator("subjects", mode="before")
    @classmethod
    def _subjects_as_str(cls, value: Any) -> Any:
        return _subjects_as_str(value)

    @field_validator("subjects")
    @classmethod
    def _subject_labels(cls, value: list[str] | str) -> list[str] | str:
        if value == "all":
            return value
        if not value:
            raise ValueError("subjects is an empty list; list at least one subject label, or "
                             "write 'all' for every subject of the source")
        return _check_subject_labels(value)

    @model_validator(mode="after")
    def _combination(self) -> FMRIDatasetConfig:
        demographics = self.vae.continuous + self.vae.categorical
        if len(set(demographics)) != len(demographics):
            raise ValueError(f"vae: a demographic is listed twice: {demographics}")
        if self.vae.group is not None and self.vae.group in demographics:
            raise ValueError(f"vae.group '{self.vae.group}' is also a demographic")
        if self.decoding is not None and self.decoding.target in demographics:
            raise ValueError(
                f"decoding.target '{self.decoding.target}' is a VAE demographic, so the latents "
                "would be decorrelated from it; remove it from vae.continuous/categorical")
        if (isinstance(self.source, SyntheticFMRISource) and isinstance(self.subjects, list)):
            unknown = sorted(set(self.subjects) - set(self.source.subject_labels()))
            if unknown:
                raise ValueError(f"subjects {unknown} are not subjects of the synthetic source "
                                 f"(1..{self.source.n_subjects})")
        return self

    @property
    def demographics(self) -> list[str]:
        """Every participants column the dataset needs (VAE demographics, group, target)."""
        cols = self.vae.continuous + self.vae.categorical
        extra = [self.vae.group, self.decoding.target if self.decoding else None]
        return cols + [c for c in dict.fromkeys(extra) if c is not None and c not in cols]


def _dataset_modality(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("modality", "eeg"))
    return str(getattr(value, "modality", "eeg"))


AnyDatasetConfig = Annotated[
    Annotated[DatasetConfig, Tag("eeg")] | Annotated[FMRIDatasetConfig, Tag("fmri")],
    Discriminator(_dataset_modality, custom_error_type="modality",
                  custom_error_message="modality must be 'eeg' (the default) or 'fmri'"),
]


#: JSON schema of a folder name: at least one character that is not white space
_NON_BLANK = {"minLength": 1, "pattern": r"\S"}


class Config(StrictModel):
    """A whole brainmill run: one seed, output folders and the datasets to process."""

    seed: int = Field(42, description="Seed from which every random choice flows.")
    results_dir: str = Field("results", json_schema_extra=_NON_BLANK)
    reports_dir: str = Field("reports", json_schema_extra=_NON_BLANK)
    logs_dir: str = Field("logs", json_schema_extra=_NON_BLANK)
    datasets: dict[str, AnyDatasetConfig] = Field(..., min_length=1)

    @field_validator("results_dir", "reports_dir", "logs_dir")
    @classmethod
    def _folder_named(cls, value: str, info: ValidationInfo) -> str:
        if not value.strip():
            default = cls.model_fields[info.field_name].default
            raise ValueError(f"{info.field_name} is empty; name a folder (default "
                             f"'{default}')")
        return value

    @field_validator("datasets")
    @classmethod
    def _dataset_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not _DATASET_RE.match(name):
                raise ValueError(f"dataset name '{name}' must be letters, digits and '_' only")
        return value


# ------------------------------------------------------------------------------- loading


def _format_validation_error(err: ValidationError, source: str) -> str:
    kinds = {"synthetic", "eegbci", "files", "bids", "moabb", "bonn", "dreams",
             "synthetic_fmri", "abide", "roi_files", "nifti"}
    lines = [f"invalid configuration in {source}:"]
    for e in err.errors():
        parts = []
        for i, p in enumerate(e["loc"]):
            # pydantic inserts the discriminator's tag after 'source'; users never write it
            if i > 0 and e["loc"][i - 1] == "source" and p in kinds:
                continue
            # ... and the modality tag after the dataset name
            if i > 1 and e["loc"][i - 2] == "datasets" and p in ("eeg", "fmri"):
                continue
            parts.append(str(p))
        msg = e["msg"].removeprefix("Value error, ")
        if msg.startswith("unknown key '"):
            parts.append(msg.split("'")[1])
        lines.append(f"  - {'.'.join(parts) or '<root>'}: {msg}")
    return "\n".join(lines)


def validate_config(data: dict[str, Any], source: str = "<config>") -> Config:
    """Validate a config mapping into a :class:`Config`.

    Raises
    ------
    ConfigError
        With one line per problem: the key path and what was expected.
    """
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source)) from None


def load_config(path: str | Path) -> Config:
    """Read and validate a YAML config file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return validate_config(data, str(path))


def config_schema() -> dict[str, Any]:
    """The JSON schema of :class:`Config`, used by the Snakefile's ``validate``."""
    schema = Config.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["description"] = (
        "Generated from brainmill.config by `brainmill schema`; do not edit by hand."
    )
    return schema


def write_schema(path: str | Path = SCHEMA_PATH) -> Path:
    """Write :func:`config_schema` to ``path`` as indented JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config_schema(), indent=2, sort_keys=True) + "\n")
    return path


def mne_data_path(explicit: str | None) -> Path | None:
    """Resolve a dataset cache folder: explicit config value, then ``$MNE_DATA``."""
    if explicit:
        return Path(os.path.expandvars(os.path.expanduser(explicit)))
    env = os.environ.get("MNE_DATA")
    return Path(env) if env else None
