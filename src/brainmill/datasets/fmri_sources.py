"""One entry point per configured fMRI source: its subjects, their time series, participants.

Dispatches on the source's ``kind`` (:mod:`brainmill.config`): ``synthetic_fmri`` (embedded),
``abide`` (ABIDE I PCP CC200), ``roi_files`` (precomputed ROI time series) and ``nifti``
(4-D images through a nilearn masker).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..config import (
    ABIDESource,
    FMRIDatasetConfig,
    NiftiSource,
    ROIFilesSource,
    SyntheticFMRISource,
    is_subject_label,
    mne_data_path,
)
from ..errors import DataError
from .fmri import ROITimeSeries, participant_labels

ABIDE_FOLDER = "abide-cc200"


def abide_root(source: ABIDESource) -> Path:
    """The ABIDE folder: ``source.path``, else ``$MNE_DATA/abide-cc200``."""
    if source.path:
        return mne_data_path(source.path)
    base = mne_data_path(None)
    if base is None:
        raise DataError("the abide source has no 'path' and $MNE_DATA is not set; point "
                        "source.path at the folder holding participants.tsv and rois_cc200/")
    return base / ABIDE_FOLDER


def synthetic_spec(source: SyntheticFMRISource, seed: int):
    """The :class:`SyntheticFMRISpec` of a synthetic source and the run's seed."""
    from .synthetic_fmri import SyntheticFMRISpec

    return SyntheticFMRISpec(
        n_subjects=source.n_subjects, n_rois=source.n_rois, n_timepoints=source.n_timepoints,
        tr=source.tr, sites=tuple(source.sites), seed=seed, age_effect=source.age_effect,
        sex_effect=source.sex_effect, site_effect=source.site_effect,
        diagnosis_effect=source.diagnosis_effect)


def _abide_table(source: ABIDESource) -> pd.DataFrame:
    from .abide import abide_participants

    return abide_participants(abide_root(source), sites=source.sites,
                              pcp_release_only=source.pcp_release_only)


def _table_path(source: ROIFilesSource | NiftiSource) -> Path:
    return Path(source.root) / source.participants


def _read_table(path: Path, **read_csv: object) -> pd.DataFrame:
    """A participants table (CSV by its ending, else TSV); a broken one is a DataError."""
    try:
        return pd.read_csv(path, sep="," if path.suffix.lower() == ".csv" else "\t",
                           **read_csv)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(f"cannot parse the participants table ({err})", file=path,
                        expected="a table with a header row and one row per subject",
                        hint="Check source.participants") from err


def _all_participant_ids(source: ROIFilesSource | NiftiSource) -> list[str]:
    """Subject labels of every row of the participants table (``subjects: all``).

    Ids are stripped and lose a ``sub-`` prefix; each must then be a subject label as the
    config demands of listed subjects (letters and digits), and appear once.

    Raises
    ------
    DataError
        If the table is missing or lacks the id column, or an id is blank, not a subject
        label or listed twice (the rows are named, numbered from 1 after the header).
    """
    path = _table_path(source)
    if not path.is_file():
        raise DataError(f"participants table {path} does not exist (source.participants)")
    table = _read_table(path, dtype=str, keep_default_na=False)
    if source.id_column not in table:
        raise DataError(f"participants table {path} has no column '{source.id_column}' "
                        f"(source.id_column); columns: {list(table.columns)}")
    expected = (f"one subject label per row in column '{source.id_column}': letters and "
                "digits, optionally after 'sub-' (as in BIDS)")
    bad = [(row, raw) for row, raw in enumerate(table[source.id_column], start=1)
           if not is_subject_label(str(raw).strip().removeprefix("sub-"))]
    if bad:
        rows = "; ".join(f"data row {row}: {raw!r}" for row, raw in bad[:10])
        more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
        raise DataError(f"{len(bad)} id(s) in column '{source.id_column}' are not subject "
                        f"labels ({rows}{more})", file=path, expected=expected,
                        hint="Fix the table, or list the subjects in the config instead of "
                             "'all'")
    return participant_labels(table[source.id_column], path, source.id_column)


def dataset_subjects(ds_cfg: FMRIDatasetConfig, seed: int) -> list[str]:
    """Subject labels of an fMRI dataset: the configured list, or every subject of the source."""
    if ds_cfg.subjects != "all":
        return list(ds_cfg.subjects)
    source = ds_cfg.source
    if isinstance(source, SyntheticFMRISource):
        return source.subject_labels()
    if isinstance(source, ABIDESource):
        return [str(s) for s in _abide_table(source).index]
    return _all_participant_ids(source)


def load_subject(ds_cfg: FMRIDatasetConfig, subject: str, seed: int) -> ROITimeSeries:
    """One subject's ROI time series from the dataset's source."""
    source = ds_cfg.source
    if isinstance(source, SyntheticFMRISource):
        from .synthetic_fmri import synthetic_fmri_subject

        return synthetic_fmri_subject(synthetic_spec(source, seed), subject)
    if isinstance(source, ABIDESource):
        from .abide import load_abide_subject

        return load_abide_subject(abide_root(source), subject)
    if isinstance(source, ROIFilesSource):
        from .fmri import read_roi_timeseries

        path = Path(source.root) / source.pattern.format(subject=subject)
        # NaN rows reach clean_fmri, which fails or excludes the subject as configured
        return read_roi_timeseries(path, tr=source.tr, subject=subject,
                                   roi_names=source.roi_names,
                                   allow_nan=ds_cfg.preprocessing.on_nan == "exclude")
    from .fmri import extract_roi_timeseries

    root = Path(source.root)
    img = root / source.pattern.format(subject=subject)
    if not img.is_file():
        raise DataError(f"sub-{subject}: image {img} does not exist (source.pattern)")
    confounds = None
    if source.confounds:
        from .fmri import read_confounds

        values, names = read_confounds(root / source.confounds.format(subject=subject),
                                       columns=source.confound_columns, subject=subject)
        confounds = pd.DataFrame(values, columns=names)
    return extract_roi_timeseries(img, root / source.atlas, subject=subject,
                                  kind=source.atlas_kind, confounds=confounds,
                                  labels=source.labels, tr=source.tr)


def participants(ds_cfg: FMRIDatasetConfig, subjects: list[str], seed: int) -> pd.DataFrame:
    """Participants table of ``subjects`` (index: subject label) with the dataset's columns.

    Holds every column of :attr:`FMRIDatasetConfig.demographics`, plus ``site`` and
    ``mean_fd`` when the source has them.

    Raises
    ------
    DataError
        A needed column or subject is missing from the table (named with the file).
    """
    source = ds_cfg.source
    needed = ds_cfg.demographics
    if isinstance(source, SyntheticFMRISource):
        from .synthetic_fmri import synthetic_participants

        table = synthetic_participants(synthetic_spec(source, seed))
        where = "the synthetic_fmri source"
    elif isinstance(source, ABIDESource):
        table = _abide_table(source)
        where = str(abide_root(source) / "participants.tsv")
    else:
        from .fmri import read_participants

        path = _table_path(source)
        header = _read_table(path, nrows=0).columns if path.is_file() else []
        extra = [c for c in ("site", "mean_fd") if c in header and c not in needed]
        return read_participants(path, subjects, needed + extra, id_column=source.id_column)
    missing_cols = [c for c in needed if c not in table.columns]
    if missing_cols:
        raise DataError(f"{where}: participants have no column(s) {missing_cols}; available: "
                        f"{list(table.columns)}")
    missing = [s for s in subjects if s not in table.index]
    if missing:
        raise DataError(f"{where}: subject(s) {missing} are not in the participants table")
    extra = [c for c in ("site", "mean_fd") if c in table.columns and c not in needed]
    return table.loc[list(subjects), needed + extra]
