"""Dataset loaders. Each returns a :class:`~brainmill.datasets.base.Recording`.

One module per source: ``synthetic`` (embedded, no download), ``eegbci`` (PhysioNet motor
imagery via MNE's fetcher and cache), ``files`` (any file MNE reads), ``bids`` (mne-bids), ``moabb`` (MOABB datasets, optional extra), ``bonn`` and ``dreams``
(single-channel clinical and sleep EEG from local copies). fMRI sources (``synthetic_fmri``,
``abide``, ``roi_files``, ``nifti``) return ROI time series through
:mod:`brainmill.datasets.fmri_sources`.
"""

from __future__ import annotations

from importlib import import_module

from ..config import DatasetConfig
from .base import Recording, RunInfo, event_id_for

#: source kind → (module, one-line description), listed by ``brainmill datasets``.
SOURCES: dict[str, tuple[str, str]] = {
    "synthetic": (
        "brainmill.datasets.synthetic",
        "Embedded synthetic motor imagery (left/right hand, feet); 1/f background, mu/beta "
        "ERD, blinks, line noise; two sessions; no download.",
    ),
    "eegbci": (
        "brainmill.datasets.eegbci",
        "PhysioNet EEG Motor Movement/Imagery (109 subjects, 64 ch, 160 Hz) via "
        "mne.datasets.eegbci; offline from a local cache ($MNE_DATA).",
    ),
    "files": (
        "brainmill.datasets.files",
        "Any recording MNE reads: EDF, BDF, GDF, FIF, BrainVision, EEGLAB; events from "
        "annotations or a stim channel.",
    ),
    "bids": (
        "brainmill.datasets.bids",
        "A BIDS dataset (EEG/MEG/iEEG) read with mne-bids.",
    ),
    "moabb": (
        "brainmill.datasets.moabb",
        "Any MOABB dataset (BNCI2014_001, PhysionetMI, …) from its local cache; needs the "
        "'moabb' extra.",
    ),
    "bonn": (
        "brainmill.datasets.bonn",
        "Bonn University epilepsy EEG (sets Z, O, N, F, S; 1 channel, 173.61 Hz, 23.6-s "
        "segments) from a local copy; one pooled subject, windows labelled by set.",
    ),
    "dreams": (
        "brainmill.datasets.dreams",
        "DREAMS Sleep Spindles database (1 channel, 30-min excerpts) from a local copy; one "
        "pooled subject, excerpts as sessions, 30-s windows labelled W/REM/N1/N2/N3.",
    ),
}


#: fMRI source kind → (module, one-line description); loaded through
#: :mod:`brainmill.datasets.fmri_sources`.
FMRI_SOURCES: dict[str, tuple[str, str]] = {
    "synthetic_fmri": (
        "brainmill.datasets.synthetic_fmri",
        "Embedded resting-state ROI time series (2 sites) with known age, sex, site and "
        "diagnosis effects on connectivity and motion confounds; no download.",
    ),
    "abide": (
        "brainmill.datasets.abide",
        "ABIDE I (Preprocessed Connectomes Project) CC200 ROI time series with age, sex, "
        "site, diagnosis and motion, from a local copy.",
    ),
    "roi_files": (
        "brainmill.datasets.fmri",
        "Precomputed ROI time series per subject (.1D/.tsv/.csv, gzipped or not) + a "
        "participants table.",
    ),
    "nifti": (
        "brainmill.datasets.fmri",
        "4-D NIfTI images reduced to ROI time series by nilearn's NiftiLabelsMasker or "
        "NiftiMapsMasker over an atlas, confounds from a TSV, + a participants table.",
    ),
}


def load_recording(dataset: DatasetConfig, subject: str, *, seed: int) -> Recording:
    """Load one subject of a configured dataset.

    Parameters
    ----------
    dataset : DatasetConfig
        The dataset's configuration (source, events, …).
    subject : str
        Subject label, one of ``dataset.subjects``.
    seed : int
        The run's seed (used by synthetic data only).

    Returns
    -------
    Recording
        Raw with annotations renamed to class names, uniform ``event_id``, run spans.
    """
    module = import_module(SOURCES[dataset.source.kind][0])
    return module.load(dataset.source, str(subject), dataset.events, seed=seed)


__all__ = ["FMRI_SOURCES", "Recording", "RunInfo", "SOURCES", "event_id_for", "load_recording"]
