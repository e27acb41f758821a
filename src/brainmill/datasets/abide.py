"""ABIDE I, Preprocessed Connectomes Project (PCP) CC200 ROI time series, from a local copy.

Expected layout of ``root`` (e.g. ``../shared/data/abide-cc200``)::

    participants.tsv            participant_id (NYU_0050952), file, site, age, sex (M/F),
                                diagnosis (ASD/TC), mean_fd, n_timepoints, in_pcp_release
    rois_cc200/<FILE_ID>_rois_cc200.1D.gz
                                gzip AFNI table: header ``#1 #2 … #200``, one row per volume
    CC200.nii.gz                Craddock 200-region atlas (optional: ROI coordinates)

The subject label is the numeric part of ``participant_id`` (``"0050952"``), which is the
ABIDE ``SUB_ID`` zero-padded to 7 digits and unique across sites.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from .fmri import ROITimeSeries, parcellation_cut_coords, read_roi_timeseries

#: Repetition time (s) of the ABIDE I resting-state scans per site. From the ABIDE I site
#: scan-parameter sheets (fcon_1000.projects.nitrc.org/indi/abide/abide_I.html): NYU Langone
#: TR = 2000 ms (180 volumes), University of Pittsburgh TR = 1500 ms (200 volumes). The sheets
#: could not be fetched here; the values were cross-checked against several public ABIDE
#: loaders (site -> TR tables, searched with the project's code search) and against the PCP
#: file lengths, which are the scan lengths less 4 volumes (NYU 176, PITT 196).
ABIDE_TR = {"NYU": 2.0, "PITT": 1.5}

#: Number of CC200 regions (columns of every ROI file).
N_ROIS = 200
PARTICIPANTS = "participants.tsv"
ATLAS = "CC200.nii.gz"
COLUMNS = ("participant_id", "file", "site", "age", "sex", "diagnosis", "mean_fd",
           "n_timepoints", "in_pcp_release")
LAYOUT = (f"{PARTICIPANTS} (columns {', '.join(COLUMNS)}), rois_cc200/<FILE_ID>_rois_cc200"
          f".1D.gz and optionally {ATLAS}")


def _participants_path(root: str | Path) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise DataError("the ABIDE folder does not exist", file=root,
                        expected=f"a folder holding {LAYOUT}")
    path = root / PARTICIPANTS
    if not path.is_file():
        raise DataError(f"{PARTICIPANTS} not found", file=path,
                        expected=f"a folder holding {LAYOUT}")
    return path


def _parse_bool(values: pd.Series, path: Path) -> pd.Series:
    text = values.astype(str).str.strip().str.lower()
    bad = sorted(set(text[~text.isin(["true", "false", "1", "0"])]))
    if bad:
        raise DataError(f"in_pcp_release holds {', '.join(bad[:5])}", file=path,
                        expected="True or False")
    return text.isin(["true", "1"])


def _read_table(file: Path) -> pd.DataFrame:
    """The whole participants table, typed and indexed by subject label."""
    try:
        table = pd.read_csv(file, sep="\t", dtype={"participant_id": str, "file": str,
                                                   "site": str, "sex": str, "diagnosis": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(f"cannot parse the table ({err})", file=file,
                        expected=f"a tab-separated table with columns {', '.join(COLUMNS)}"
                        ) from err
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise DataError(f"column(s) {', '.join(missing)} not found; the file has "
                        f"{', '.join(map(str, table.columns))}", file=file,
                        expected=f"columns {', '.join(COLUMNS)}")
    table = table[list(COLUMNS)].copy()
    table["site"] = table["site"].str.strip().str.upper()
    for column, allowed in (("sex", {"M", "F"}), ("diagnosis", {"ASD", "TC"})):
        bad = table.loc[~table[column].isin(allowed), "participant_id"].tolist()
        if bad:
            raise DataError(f"column '{column}' holds other values for {', '.join(bad[:5])}",
                            file=file, subject=bad[0],
                            expected=f"one of {', '.join(sorted(allowed))}")
    for column in ("age", "mean_fd", "n_timepoints"):
        values = pd.to_numeric(table[column], errors="coerce")
        bad = table.loc[values.isna(), "participant_id"].tolist()
        if bad:
            raise DataError(f"column '{column}' is empty or not a number for "
                            f"{', '.join(bad[:5])}", file=file, subject=bad[0],
                            expected="a number for every participant")
        table[column] = values.astype(int if column == "n_timepoints" else float)
    table["in_pcp_release"] = _parse_bool(table["in_pcp_release"], file)
    labels = table["participant_id"].str.split("_").str[-1]
    duplicated = sorted(set(labels[labels.duplicated()]))
    if duplicated:
        raise DataError(f"subject label(s) {', '.join(duplicated[:5])} appear twice", file=file,
                        expected="one row per subject (SUB_ID unique across sites)")
    table.index = pd.Index(labels, name="subject")
    return table


def _table(root: str | Path) -> tuple[pd.DataFrame, Path]:
    path = _participants_path(root)
    return _read_table(path), path


def abide_participants(
    root: str | Path, sites: list[str] | None = None, pcp_release_only: bool = True
) -> pd.DataFrame:
    """The participants of the local ABIDE copy.

    Parameters
    ----------
    root : str | Path
        Folder with the layout described in the module docstring.
    sites : list of str, optional
        Sites to keep (case-insensitive, e.g. ``["NYU", "PITT"]``); all when None.
    pcp_release_only : bool
        Keep only the subjects of the PCP release quality selection (``in_pcp_release``).

    Returns
    -------
    DataFrame
        Index ``subject`` (``"0050952"``); columns participant_id, file, site (upper case),
        age (float, years), sex (M/F), diagnosis (ASD/TC), mean_fd (float, mm),
        n_timepoints (int), in_pcp_release (bool). Rows in file order.

    Raises
    ------
    DataError
        If ``root`` or ``participants.tsv`` is missing, a column is missing or holds an
        unexpected value, or a requested site has no participant.
    """
    table, path = _table(root)
    if sites is not None:
        wanted = [s.strip().upper() for s in sites]
        unknown = [s for s in wanted if s not in set(table["site"])]
        if unknown:
            raise DataError(f"site(s) {', '.join(unknown)} not found", file=path,
                            expected=f"sites among {', '.join(sorted(set(table['site'])))}")
        table = table[table["site"].isin(wanted)]
    if pcp_release_only:
        table = table[table["in_pcp_release"]]
    return table


@functools.lru_cache(maxsize=4)
def _atlas_coords(path: str) -> tuple[tuple[float, ...], tuple[tuple[float, float, float], ...]]:
    """``(label values, cut coordinates)`` of a labels atlas, computed once per process."""
    values, coords = parcellation_cut_coords(path)
    return tuple(values), tuple(tuple(float(x) for x in c) for c in coords)


def cc200_coords(root: str | Path, roi_names: list[str]) -> np.ndarray | None:
    """MNI coordinates (mm) of the named CC200 regions, shape (n_rois, 3).

    ``roi_names`` are label values as text (``"1"`` … ``"200"``). Returns None when
    ``CC200.nii.gz`` is absent.

    Raises
    ------
    DataError
        If a name is not a label of the atlas.
    """
    atlas = Path(root) / ATLAS
    if not atlas.is_file():
        return None
    values, coords = _atlas_coords(str(atlas.resolve()))
    by_value = dict(zip(values, coords, strict=True))
    try:
        return np.array([by_value[float(name)] for name in roi_names], dtype=float)
    except (KeyError, ValueError) as err:
        raise DataError(f"ROI {err} is not a label of the atlas", file=atlas,
                        expected=f"labels 1 to {N_ROIS}") from err


def load_abide_subject(root: str | Path, subject: str) -> ROITimeSeries:
    """One subject's CC200 ROI time series.

    Parameters
    ----------
    root : str | Path
        Folder with the layout described in the module docstring.
    subject : str
        Subject label (``"0050952"``) or participant id (``"NYU_0050952"``).

    Returns
    -------
    ROITimeSeries
        ``data`` (n_timepoints, 200), ``roi_names`` ``"1"`` … ``"200"``, ``tr`` from
        :data:`ABIDE_TR` by site, ``roi_coords`` from ``CC200.nii.gz`` (None when absent),
        no confounds (the PCP tables are already nuisance-regressed).

    Raises
    ------
    DataError
        If the subject is not listed, its site has no known TR, or its file is missing,
        malformed or has another number of rows than ``n_timepoints`` or of columns than 200.
    """
    table, path = _table(root)
    label = str(subject).split("_")[-1]
    if label not in table.index:
        raise DataError("subject not listed", file=path, subject=str(subject),
                        expected="a participant_id such as NYU_0050952 (label 0050952)")
    row = table.loc[label]
    site = row["site"]
    if site not in ABIDE_TR:
        raise DataError(f"no repetition time known for site {site}", file=path, subject=label,
                        expected=f"a site among {', '.join(ABIDE_TR)}",
                        hint="Add the site's TR to brainmill.datasets.abide.ABIDE_TR")
    file = Path(root) / row["file"]
    roi_names = [str(i) for i in range(1, N_ROIS + 1)]
    ts = read_roi_timeseries(file, tr=ABIDE_TR[site], subject=label, roi_names=roi_names)
    if ts.n_timepoints != row["n_timepoints"]:
        raise DataError(f"{ts.n_timepoints} rows", file=file, subject=label,
                        expected=f"{row['n_timepoints']} volumes as participants.tsv says")
    ts.roi_coords = cc200_coords(root, roi_names)
    return ts
