"""ROI time series of resting-state fMRI: the container, the readers and atlas extraction.

An :class:`ROITimeSeries` holds one subject's regional signals, ``(n_timepoints, n_rois)``,
with the repetition time, ROI names and optional motion confounds and ROI coordinates. It is
read from text tables (:func:`read_roi_timeseries`: AFNI ``.1D`` as the Preprocessed
Connectomes Project ships them, TSV, CSV) or extracted from a 4-D NIfTI image with a labels or
maps atlas (:func:`extract_roi_timeseries`, nilearn maskers). Demographics come from a
participants table (:func:`read_participants`).
"""

from __future__ import annotations

import gzip
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from ..errors import DataError
from ..io import write_npz

#: Keys of the ``.npz`` written by :meth:`ROITimeSeries.save`.
NPZ_KEYS = ("data", "tr", "sfreq", "roi_names", "subject", "source", "confounds",
            "confound_names", "roi_coords")

#: Column separator per table ending (None: any run of whitespace).
_SEPARATORS = {".1d": None, ".txt": None, ".tsv": "\t", ".csv": ","}


@dataclass
class ROITimeSeries:
    """One subject's ROI-averaged BOLD signals.

    Attributes
    ----------
    data : ndarray, shape (n_timepoints, n_rois)
        Signals, float64, one row per volume.
    tr : float
        Repetition time in seconds.
    roi_names : list of str
        One name per column of ``data``.
    subject : str
        Subject label.
    source : str
        The file(s) the signals came from, or ``"synthetic"``.
    confounds : ndarray, shape (n_timepoints, n_confounds), or None
        Nuisance regressors (e.g. the 6 motion parameters); not yet regressed out.
    confound_names : list of str
        One name per column of ``confounds``.
    roi_coords : ndarray, shape (n_rois, 3), or None
        ROI centres in MNI millimetres, for nilearn plotting.

    Raises
    ------
    ValueError
        If the shapes disagree or ``tr`` is not a positive number.
    """

    data: np.ndarray
    tr: float
    roi_names: list[str]
    subject: str
    source: str
    confounds: np.ndarray | None = None
    confound_names: list[str] = field(default_factory=list)
    roi_coords: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.data = np.asarray(self.data, dtype=np.float64)
        self.tr = float(self.tr)
        self.roi_names = [str(n) for n in self.roi_names]
        self.subject = str(self.subject)
        self.source = str(self.source)
        self.confound_names = [str(n) for n in self.confound_names]
        if self.data.ndim != 2:
            raise ValueError(f"data must be 2-D (n_timepoints, n_rois), got {self.data.shape}")
        if not (math.isfinite(self.tr) and self.tr > 0):
            raise ValueError(f"tr must be a positive number of seconds, got {self.tr}")
        if len(self.roi_names) != self.n_rois:
            raise ValueError(f"{len(self.roi_names)} roi_names for {self.n_rois} columns")
        if self.confounds is not None:
            self.confounds = np.asarray(self.confounds, dtype=np.float64)
            if self.confounds.ndim != 2 or len(self.confounds) != self.n_timepoints:
                raise ValueError(f"confounds must be ({self.n_timepoints}, n_confounds), got "
                                 f"{self.confounds.shape}")
            if len(self.confound_names) != self.confounds.shape[1]:
                raise ValueError(f"{len(self.confound_names)} confound_names for "
                                 f"{self.confounds.shape[1]} confound columns")
        elif self.confound_names:
            raise ValueError("confound_names given without confounds")
        if self.roi_coords is not None:
            self.roi_coords = np.asarray(self.roi_coords, dtype=np.float64)
            if self.roi_coords.shape != (self.n_rois, 3):
                raise ValueError(f"roi_coords must be ({self.n_rois}, 3), got "
                                 f"{self.roi_coords.shape}")

    @property
    def n_timepoints(self) -> int:
        """Number of volumes (rows of ``data``)."""
        return self.data.shape[0]

    @property
    def n_rois(self) -> int:
        """Number of regions (columns of ``data``)."""
        return self.data.shape[1]

    def save(self, path: str | Path) -> None:
        """Write to a compressed ``.npz`` atomically.

        Keys: ``data``, ``tr``, ``sfreq`` (``1 / tr``), ``roi_names``, ``subject``,
        ``source``, ``confounds`` (shape ``(0, 0)`` when None), ``confound_names``,
        ``roi_coords`` (shape ``(0, 3)`` when None).
        """
        write_npz(
            path,
            data=self.data,
            tr=np.float64(self.tr),
            sfreq=np.float64(1.0 / self.tr),
            roi_names=np.asarray(self.roi_names, dtype=str).reshape(-1),
            subject=np.asarray(self.subject),
            source=np.asarray(self.source),
            confounds=np.zeros((0, 0)) if self.confounds is None else self.confounds,
            confound_names=np.asarray(self.confound_names, dtype=str).reshape(-1),
            roi_coords=np.zeros((0, 3)) if self.roi_coords is None else self.roi_coords,
        )

    @classmethod
    def load(cls, path: str | Path) -> ROITimeSeries:
        """Read a file written by :meth:`save`.

        Raises
        ------
        DataError
            If the file is missing or unreadable, lacks keys or holds inconsistent arrays.
        """
        expected = f"an .npz written by ROITimeSeries.save with keys {', '.join(NPZ_KEYS)}"
        try:
            with np.load(path, allow_pickle=False) as npz:
                missing = [k for k in NPZ_KEYS if k not in npz.files]
                if missing:
                    raise DataError(f"keys {', '.join(missing)} missing", file=path,
                                    expected=expected)
                arrays = {k: npz[k] for k in NPZ_KEYS}
        except DataError:
            raise
        except (OSError, ValueError) as err:  # missing file, not a zip, pickled content
            raise DataError(f"cannot read the file ({err})", file=path,
                            expected=expected) from err
        confounds = arrays["confounds"]
        coords = arrays["roi_coords"]
        try:
            return cls(
                data=arrays["data"],
                tr=float(arrays["tr"]),
                roi_names=[str(n) for n in arrays["roi_names"]],
                subject=str(arrays["subject"]),
                source=str(arrays["source"]),
                confounds=None if confounds.shape == (0, 0) else confounds,
                confound_names=[str(n) for n in arrays["confound_names"]],
                roi_coords=None if len(coords) == 0 else coords,
            )
        except ValueError as err:
            raise DataError(f"inconsistent arrays: {err}", file=path,
                            subject=str(arrays["subject"]), expected=expected) from err


# ------------------------------------------------------------------------ text tables


def _table_kind(path: Path) -> str:
    """Lower-case ending that picks the parser (``.gz`` stripped): .1d, .txt, .tsv or .csv."""
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return Path(name).suffix


def _read_lines(path: Path, subject: str | None, expected: str) -> list[str]:
    """The file's text lines (gunzipped when the name ends in ``.gz``)."""
    if not path.is_file():
        raise DataError("file not found", file=path, subject=subject, expected=expected)
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rt", encoding="utf-8") as fh:
                return fh.read().splitlines()
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read the file ({err})", file=path, subject=subject,
                        expected=expected) from err


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _format_rows(rows: np.ndarray | list[int], limit: int = 10) -> str:
    rows = [int(r) for r in rows]
    text = ", ".join(str(r) for r in rows[:limit])
    return text + (f" and {len(rows) - limit} more" if len(rows) > limit else "")


def read_roi_timeseries(
    path: str | Path,
    tr: float,
    subject: str,
    roi_names: list[str] | None = None,
    *,
    allow_nan: bool = False,
) -> ROITimeSeries:
    """Read ROI time series from a text table, one row per volume and one column per ROI.

    Parameters
    ----------
    path : str | Path
        ``.1D``, ``.txt``, ``.tsv`` or ``.csv``, each optionally gzipped (``.gz``). ``.1D``
        and ``.txt``: whitespace-separated; lines starting with ``#`` are comments, and the
        last one before the data names the columns when it has one field per column
        (``#1  #2 …`` → ``"1"``, ``"2"``, as AFNI and the PCP write them). ``.tsv``/``.csv``
        (and ``.txt``): a first row holding a non-number is the header of ROI names.
    tr : float
        Repetition time in seconds.
    subject : str
        Subject label, for the result and error messages.
    roi_names : list of str, optional
        Names of the atlas labels, in column order; they take precedence over a header.
        Without either, the columns are named ``"1"``, ``"2"``, …
    allow_nan : bool
        Keep NaN/inf cells instead of raising (to let
        :func:`brainmill.preprocessing.fmri.clean_timeseries` exclude the subject).

    Returns
    -------
    ROITimeSeries
        ``data`` of shape (n_timepoints, n_rois); ``source`` is ``str(path)``.

    Raises
    ------
    DataError
        If the file is missing, unreadable or empty, holds a non-numeric cell (its row and
        column are named) or rows of different lengths, holds NaN/inf (the 0-based row
        indices are listed) while ``allow_nan`` is False, or if ``roi_names`` does not have
        one name per column.
    """
    path = Path(path)
    kind = _table_kind(path)
    if kind not in _SEPARATORS:
        raise ValueError(f"{path}: unknown ROI table ending {kind!r}; use one of "
                         f"{', '.join(_SEPARATORS)} (optionally .gz)")
    sep = _SEPARATORS[kind]
    expected = "one row per volume and one numeric column per ROI"
    lines = _read_lines(path, subject, expected)

    comments: list[str] = []
    rows: list[tuple[int, list[str]]] = []  # (1-based line number, fields)
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if sep is None and line.lstrip().startswith("#"):
            if not rows:  # comments after the first data row cannot be a header
                comments.append(line.strip())
            continue
        fields = line.split() if sep is None else [f.strip() for f in line.split(sep)]
        rows.append((number, fields))

    header: list[str] | None = None
    if rows and kind != ".1d" and not all(_is_number(f) for f in rows[0][1]):
        header = rows.pop(0)[1]
    if not rows:
        raise DataError("the file holds no data rows", file=path, subject=subject,
                        expected=expected)
    n_cols = len(rows[0][1])
    if header is None and comments:
        fields = [f.lstrip("#").strip() for f in comments[-1].lstrip("#").split()]
        fields = [f for f in fields if f]
        if len(fields) == n_cols:
            header = fields
    if header is not None and len(header) != n_cols:
        raise DataError(f"the header names {len(header)} columns but the first data row "
                        f"(line {rows[0][0]}) has {n_cols}", file=path, subject=subject,
                        expected="one header name per column")
    ragged = [(number, len(fields)) for number, fields in rows if len(fields) != n_cols]
    if ragged:
        number, width = ragged[0]
        raise DataError(f"line {number} has {width} columns where the first data row has "
                        f"{n_cols} ({len(ragged)} ragged rows)", file=path, subject=subject,
                        expected=f"{n_cols} values on every row")
    try:
        data = np.array([fields for _, fields in rows], dtype=np.float64)
    except ValueError:
        for row, (number, fields) in enumerate(rows):
            for col, cell in enumerate(fields):
                if not _is_number(cell):
                    name = f" ({header[col]!r})" if header is not None else ""
                    raise DataError(
                        f"non-numeric value {cell!r} at row {row} (line {number}), column "
                        f"{col}{name}", file=path, subject=subject, expected=expected,
                    ) from None
        raise  # not reached: some cell failed to parse above

    if roi_names is not None:
        if len(roi_names) != n_cols:
            raise DataError(f"atlas has {len(roi_names)} labels, file has {n_cols} columns",
                            file=path, subject=subject,
                            expected=f"one column per atlas label ({len(roi_names)})")
        names = [str(n) for n in roi_names]
    else:
        names = header if header is not None else [str(i + 1) for i in range(n_cols)]

    bad = np.flatnonzero(~np.isfinite(data).all(axis=1))
    if bad.size and not allow_nan:
        raise DataError(f"rows {_format_rows(bad)} (0-based) hold NaN or inf", file=path,
                        subject=subject, expected="finite values in every row")
    return ROITimeSeries(data=data, tr=tr, roi_names=names, subject=subject,
                         source=str(path))


def read_confounds(
    path: str | Path, columns: list[str] | None = None, subject: str | None = None
) -> tuple[np.ndarray, list[str]]:
    """Read nuisance regressors from a TSV (``.csv``: comma-separated) with a header row.

    Parameters
    ----------
    path : str | Path
        E.g. fMRIPrep's ``*_desc-confounds_timeseries.tsv``; ``n/a`` marks missing values.
    columns : list of str, optional
        Columns to keep, in this order; all columns when None.
    subject : str, optional
        For error messages.

    Returns
    -------
    confounds : ndarray, shape (n_timepoints, n_confounds)
    names : list of str

    Notes
    -----
    Missing values in the first row are filled with the second row's, as
    ``nilearn.interfaces.fmriprep`` does (derivative columns have no value at the first
    volume); missing values anywhere else are an error.

    Raises
    ------
    DataError
        If the file is missing or empty, lacks a requested column (the available ones are
        listed), holds a non-numeric column or missing values after the first row.
    """
    path = Path(path)
    expected = "a table with a header row of confound names and one row per volume"
    if not path.is_file():
        raise DataError("file not found", file=path, subject=subject, expected=expected)
    sep = "," if _table_kind(path) == ".csv" else "\t"
    try:
        table = pd.read_csv(path, sep=sep, na_values=["n/a", "NA", "NaN", ""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(f"cannot parse the table ({err})", file=path, subject=subject,
                        expected=expected) from err
    if columns is not None:
        missing = [c for c in columns if c not in table.columns]
        if missing:
            raise DataError(f"confound column(s) {', '.join(missing)} not found; the file has "
                            f"{', '.join(map(str, table.columns))}", file=path,
                            subject=subject, expected="the configured confound columns")
        table = table[list(columns)]
    if table.empty:
        raise DataError("no confound rows or columns", file=path, subject=subject,
                        expected=expected)
    non_numeric = [str(c) for c in table.columns if not pd.api.types.is_numeric_dtype(table[c])]
    if non_numeric:
        raise DataError(f"non-numeric confound column(s) {', '.join(non_numeric)}", file=path,
                        subject=subject, expected="numbers or n/a in every confound column")
    values = table.to_numpy(dtype=np.float64, copy=True)
    if len(values) > 1:
        first = np.isnan(values[0])
        values[0, first] = values[1, first]
    bad_rows, bad_cols = np.nonzero(~np.isfinite(values))
    if bad_rows.size:
        cols = sorted({str(table.columns[c]) for c in bad_cols})
        raise DataError(f"missing or infinite values in rows {_format_rows(np.unique(bad_rows))} "
                        f"(0-based) of column(s) {', '.join(cols)}", file=path,
                        subject=subject, expected="values in every row after the first")
    return values, [str(c) for c in table.columns]


# ------------------------------------------------------------------------------ NIfTI


def _image_tr(img: Any, subject: str, source: str) -> float:
    """Repetition time in seconds from a 4-D image header (``pixdim[4]``, time units).

    ``pixdim[4] = 1`` with unknown time units is what nibabel writes when nobody set a TR,
    so it counts as no TR.
    """
    zooms = img.header.get_zooms()
    tr = float(zooms[3]) if len(zooms) > 3 else 0.0
    unit = img.header.get_xyzt_units()[1] if hasattr(img.header, "get_xyzt_units") else "sec"
    if unit == "unknown" and tr == 1.0:
        tr = 0.0
    tr *= {"msec": 1e-3, "usec": 1e-6}.get(unit, 1.0)
    if not (math.isfinite(tr) and tr > 0):
        raise DataError("the image header holds no repetition time", file=source,
                        subject=subject, expected="a 4-D image with pixdim[4] > 0",
                        hint="Pass tr= explicitly")
    return tr


def parcellation_cut_coords(atlas: Any) -> tuple[list[float], np.ndarray]:
    """Cut coordinates of every region of a labels atlas, as nilearn computes them.

    ``nilearn.plotting.find_parcellation_cut_coords`` (centre of mass of the largest
    connected component of each label, its left-hemisphere part for labels on both sides)
    applied to one label at a time, each cropped to its bounding box in y and z (x is kept
    whole because the hemisphere split depends on it). Same result, but linear in the
    number of labels: the direct call on the 200-region CC200 atlas takes seconds because it
    re-transforms every coordinate found so far after each label.

    Parameters
    ----------
    atlas : str | Path | Nifti1Image
        3-D image, 0 = background.

    Returns
    -------
    values : list of float
        Label values, increasing.
    coords : ndarray, shape (n_labels, 3)
        MNI (world) millimetres.
    """
    import nibabel as nib
    from nilearn.image import load_img, reorder_img
    from nilearn.plotting import find_parcellation_cut_coords
    from scipy.ndimage import find_objects

    img = reorder_img(load_img(atlas))
    data = np.asarray(img.dataobj)
    values = np.array([v for v in np.unique(data) if v != 0])
    codes = np.zeros(data.shape, dtype=np.int64)
    foreground = data != 0
    codes[foreground] = np.searchsorted(values, data[foreground]) + 1
    boxes = find_objects(codes, max_label=len(values))
    coords = np.empty((len(values), 3))
    for i, box in enumerate(boxes):
        # one voxel of margin in y and z so that the crop holds background
        y0, z0 = max(box[1].start - 1, 0), max(box[2].start - 1, 0)
        crop = codes[:, y0:box[1].stop + 1, z0:box[2].stop + 1] == i + 1
        if crop.all():  # nilearn drops the first value of an image without background
            crop, y0, z0 = codes == i + 1, 0, 0
        shift = np.eye(4)
        shift[1, 3], shift[2, 3] = y0, z0
        one = nib.Nifti1Image(crop.astype(np.int16), img.affine @ shift)
        coords[i] = find_parcellation_cut_coords(one)[0]
    return [float(v) for v in values], coords


def _read_nifti(img: Any, source: str, subject: str, expected: str) -> Any:
    """Load a NIfTI image and read its voxels now, so that a broken file is a DataError.

    nibabel reads lazily: without the read here a truncated file fails deep inside the
    masker (``EOFError``, "Whoops, not enough data in file"). The voxels stay cached in the
    image, so the masker does not read them again.
    """
    import zlib

    from nibabel.filebasedimages import ImageFileError
    from nilearn import image as nimage

    if isinstance(img, (str, Path)) and not Path(img).is_file():
        raise DataError("file not found", file=source, subject=subject, expected=expected)
    try:
        loaded = nimage.load_img(img)
        nimage.get_data(loaded)
    except (OSError, EOFError, ValueError, TypeError, zlib.error, ImageFileError) as err:
        raise DataError(f"cannot read the image ({type(err).__name__}: {err}); the file may be "
                        "truncated or not NIfTI", file=source, subject=subject,
                        expected=expected) from err
    return loaded


def _label_coords(atlas_img: Any, region_ids: list[float]) -> np.ndarray:
    """Cut coordinates (MNI mm) of the given label values, shape (len(region_ids), 3)."""
    values, coords = parcellation_cut_coords(atlas_img)
    by_value = dict(zip(values, coords, strict=True))
    return np.array([by_value[float(r)] for r in region_ids], dtype=float)


def _confound_table(
    confounds: np.ndarray | pd.DataFrame | str | Path | None, subject: str
) -> tuple[np.ndarray | None, list[str]]:
    if confounds is None:
        return None, []
    if isinstance(confounds, (str, Path)):
        return read_confounds(confounds, subject=subject)
    if isinstance(confounds, pd.DataFrame):
        return confounds.to_numpy(dtype=np.float64), [str(c) for c in confounds.columns]
    values = np.asarray(confounds, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    return values, [f"confound_{i}" for i in range(values.shape[1])]


def extract_roi_timeseries(
    img: Any,
    atlas: Any,
    subject: str,
    kind: Literal["labels", "maps"] = "labels",
    confounds: np.ndarray | pd.DataFrame | str | Path | None = None,
    standardize: bool = False,
    labels: list[str] | None = None,
    tr: float | None = None,
) -> ROITimeSeries:
    """Average a 4-D BOLD image within the regions of an atlas.

    Parameters
    ----------
    img : str | Path | Nifti1Image
        4-D BOLD image, (x, y, z, n_timepoints).
    atlas : str | Path | Nifti1Image
        ``kind="labels"``: 3-D integer image, 0 = background, one value per region
        (``NiftiLabelsMasker``: mean of the voxels per label). ``kind="maps"``: 4-D image of
        ``n_rois`` weight maps (``NiftiMapsMasker``: least-squares fit of the maps). The atlas
        is resampled to the image grid when they differ (nilearn's default).
    subject : str
        Subject label.
    kind : {"labels", "maps"}
    confounds : ndarray (n_timepoints, n_confounds) | DataFrame | path to a TSV, optional
        Attached to the result, **not** regressed here: cleaning regresses them once
        (:func:`brainmill.preprocessing.fmri.clean_timeseries`).
    standardize : bool
        z-score each ROI signal (``"zscore_sample"``) in the masker.
    labels : list of str, optional
        ROI names, one per atlas region in increasing label value (labels) or map order
        (maps); default: the label values (``"1"``, …) or the map numbers from 1.
    tr : float, optional
        Repetition time in seconds; read from the image header when None.

    Returns
    -------
    ROITimeSeries
        ``data`` (n_timepoints, n_rois); ``roi_coords`` from
        ``nilearn.plotting.find_parcellation_cut_coords`` /
        ``find_probabilistic_atlas_cut_coords`` of the atlas.

    Raises
    ------
    DataError
        If the image or the atlas is missing or cannot be read (truncated, not NIfTI; the
        file at fault is named), ``labels`` does not have one name per atlas region, the
        image is not 4-D, a labels atlas has no region or none of its regions overlaps the
        image, the header holds no TR (and ``tr`` is None), or the confounds have another
        number of rows than the image has volumes.
    """
    from nilearn.maskers import NiftiLabelsMasker, NiftiMapsMasker

    source = str(img) if isinstance(img, (str, Path)) else "in-memory image"
    atlas_source = str(atlas) if isinstance(atlas, (str, Path)) else "in-memory atlas"
    if kind not in ("labels", "maps"):
        raise ValueError(f"kind must be 'labels' or 'maps', got {kind!r}")
    atlas_expected = ("a 3-D NIfTI image of integer labels" if kind == "labels"
                      else "a 4-D NIfTI image, one map per region")
    bold = _read_nifti(img, source, subject, "a 4-D NIfTI BOLD image (x, y, z, time)")
    atlas_img = _read_nifti(atlas, atlas_source, subject, atlas_expected)
    if bold.ndim != 4:
        raise DataError(f"the image is {bold.ndim}-D", file=source, subject=subject,
                        expected="a 4-D BOLD image (x, y, z, time)")
    tr = _image_tr(bold, subject, source) if tr is None else float(tr)
    standardize_arg = "zscore_sample" if standardize else None

    if kind == "labels":
        if atlas_img.ndim != 3:
            raise DataError(f"the labels atlas is {atlas_img.ndim}-D", file=atlas_source,
                            subject=subject, expected="a 3-D image of integer labels")
        atlas_values = [float(v) for v in np.unique(np.asarray(atlas_img.dataobj)) if v != 0]
        n_regions = len(atlas_values)
        if not n_regions:
            raise DataError("the labels atlas has no region: every voxel is 0 (background)",
                            file=atlas_source, subject=subject,
                            expected="a 3-D image of integer labels, 0 = background")
        masker = NiftiLabelsMasker(labels_img=atlas_img, standardize=standardize_arg)
    else:
        if atlas_img.ndim != 4:
            raise DataError(f"the maps atlas is {atlas_img.ndim}-D", file=atlas_source,
                            subject=subject, expected="a 4-D image, one map per region")
        n_regions = atlas_img.shape[3]
        masker = NiftiMapsMasker(maps_img=atlas_img, standardize=standardize_arg)
    if labels is not None and len(labels) != n_regions:
        raise DataError(f"{len(labels)} labels given for an atlas of {n_regions} regions",
                        file=atlas_source, subject=subject,
                        expected=f"one label per atlas region ({n_regions})")

    from nilearn.image.resampling import BoundingBoxError

    try:
        data = masker.fit_transform(bold)
    except ValueError as err:
        # the atlas resampled to the image grid holds no region, or nothing at all
        if not (isinstance(err, BoundingBoxError) or "No label left" in str(err)):
            raise
        raise DataError(f"no atlas region overlaps the image {source} once the atlas is "
                        f"resampled to its grid ({err})", file=atlas_source, subject=subject,
                        expected="an atlas in the same space (e.g. MNI) as the image",
                        hint="Check the atlas against the images' space and affine") from err
    if kind == "labels":
        # regions can vanish when the atlas is resampled; keep names aligned with columns
        present = [float(v) for k, v in masker.region_ids_.items() if k != "background"]
        index = [atlas_values.index(v) for v in present]
        coords = _label_coords(atlas_img, present)
        default = [f"{v:g}" for v in present]
    else:
        from nilearn.plotting import find_probabilistic_atlas_cut_coords

        index = list(range(n_regions))
        coords = find_probabilistic_atlas_cut_coords(atlas_img)
        default = [str(i + 1) for i in index]
    names = [labels[i] for i in index] if labels is not None else default

    conf, conf_names = _confound_table(confounds, subject)
    if conf is not None and len(conf) != data.shape[0]:
        raise DataError(f"confounds have {len(conf)} rows but the image has {data.shape[0]} "
                        "volumes", file=source, subject=subject,
                        expected="one confound row per volume")
    return ROITimeSeries(data=data, tr=tr, roi_names=names, subject=subject, source=source,
                         confounds=conf, confound_names=conf_names, roi_coords=coords)


# ----------------------------------------------------------------------- participants


def participant_labels(ids: pd.Series, path: str | Path, id_column: str) -> list[str]:
    """Subject labels of a participants table's id column, one per row, each once.

    An id is stripped and loses a BIDS ``sub-`` prefix (``sub-01`` is subject ``01``).

    Raises
    ------
    DataError
        If two rows give the same label (``01`` and ``sub-01`` included); the data rows are
        named, numbered from 1 after the header.
    """
    labels = [str(s).strip().removeprefix("sub-") for s in ids]
    seen: dict[str, int] = {}
    for row, label in enumerate(labels, start=1):
        if label in seen:
            raise DataError(f"subject {label} is listed twice in column '{id_column}' "
                            f"(data rows {seen[label]} and {row})", file=path, subject=label,
                            expected="one row per subject")
        seen[label] = row
    return labels


def read_participants(
    path: str | Path,
    subjects: list[str],
    columns: list[str],
    id_column: str = "participant_id",
) -> pd.DataFrame:
    """Demographics of the requested subjects from a participants table.

    Parameters
    ----------
    path : str | Path
        ``.tsv`` (tab-separated) or ``.csv``; ``n/a`` marks missing values.
    subjects : list of str
        Subject labels, matched to ``id_column`` as text; a BIDS id ``sub-01`` also matches
        the label ``01``.
    columns : list of str
        Columns to return, in this order.
    id_column : str
        Column holding the subject ids.

    Returns
    -------
    DataFrame
        Index ``subject`` (str), one row per requested subject in the requested order;
        the requested columns.

    Raises
    ------
    DataError
        If the file is missing, lacks ``id_column`` or a requested column (the available ones
        are listed), lists an id twice, lacks a requested subject, or a requested column is
        empty for a requested subject (subject and column named).
    """
    path = Path(path)
    expected = f"a table with a header row, an '{id_column}' column and one row per subject"
    if not path.is_file():
        raise DataError("file not found", file=path, expected=expected)
    sep = "," if _table_kind(path) == ".csv" else "\t"
    try:
        table = pd.read_csv(path, sep=sep, dtype={id_column: str},
                            na_values=["n/a", "NA", "NaN", ""], keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(f"cannot parse the table ({err})", file=path,
                        expected=expected) from err
    missing_cols = [c for c in [id_column, *columns] if c not in table.columns]
    if missing_cols:
        raise DataError(f"column(s) {', '.join(missing_cols)} not found; the file has "
                        f"{', '.join(map(str, table.columns))}", file=path,
                        expected=f"columns {', '.join([id_column, *columns])}")
    row_of = {label: n for n, label in
              enumerate(participant_labels(table[id_column], path, id_column))}
    rows, missing = [], []
    for subject in subjects:
        subject = str(subject)
        n = row_of.get(subject.removeprefix("sub-"))
        if n is None:
            missing.append(subject)
        rows.append(n)
    if missing:
        raise DataError(f"subject(s) {', '.join(missing[:10])}"
                        f"{f' and {len(missing) - 10} more' if len(missing) > 10 else ''} "
                        f"not in column '{id_column}'", file=path,
                        subject=missing[0] if len(missing) == 1 else None,
                        expected="a row for every configured subject")
    out = table.iloc[rows][list(columns)].copy()
    out.index = pd.Index([str(s) for s in subjects], name="subject")
    for column in columns:
        empty = out.index[out[column].isna()].tolist()
        if empty:
            raise DataError(f"column '{column}' is empty for subject(s) {', '.join(empty[:10])}",
                            file=path, subject=empty[0],
                            expected=f"a value of '{column}' for every requested subject")
    return out
