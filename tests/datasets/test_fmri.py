"""ROI time series container, text readers, NIfTI extraction and participants tables."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from brainmill.datasets.fmri import (
    NPZ_KEYS,
    ROITimeSeries,
    extract_roi_timeseries,
    parcellation_cut_coords,
    read_confounds,
    read_participants,
    read_roi_timeseries,
)
from brainmill.errors import DataError

RNG = np.random.default_rng(0)
VALUES = np.round(RNG.standard_normal((12, 4)) * 100, 6)


def _assert_names(err: DataError, path: Path | str, subject: str | None) -> None:
    """The message names the file, the subject and what was expected."""
    text = str(err.value)
    assert str(path) in text
    if subject is not None:
        assert f"subject {subject}" in text
    assert "(expected " in text


def _write(path: Path, text: str) -> Path:
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


def _table(values: np.ndarray, sep: str, header: list[str] | None, prefix: str = "") -> str:
    lines = [] if header is None else [sep.join(prefix + h for h in header)]
    lines += [sep.join(repr(float(v)) for v in row) for row in values]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------- container


def _series(**kw) -> ROITimeSeries:
    base = dict(data=VALUES, tr=2.0, roi_names=list("abcd"), subject="07", source="x.1D")
    return ROITimeSeries(**{**base, **kw})


def test_save_load_round_trip_with_everything(tmp_path):
    ts = _series(confounds=RNG.standard_normal((12, 2)), confound_names=["fd", "csf"],
                 roi_coords=RNG.standard_normal((4, 3)))
    ts.save(tmp_path / "ts.npz")
    with np.load(tmp_path / "ts.npz") as npz:
        assert set(npz.files) == set(NPZ_KEYS)
        assert float(npz["sfreq"]) == 0.5 and float(npz["tr"]) == 2.0
        assert str(npz["subject"]) == "07"
    back = ROITimeSeries.load(tmp_path / "ts.npz")
    np.testing.assert_array_equal(back.data, VALUES)
    np.testing.assert_array_equal(back.confounds, ts.confounds)
    np.testing.assert_array_equal(back.roi_coords, ts.roi_coords)
    assert (back.roi_names, back.confound_names, back.subject, back.source, back.tr) == (
        list("abcd"), ["fd", "csf"], "07", "x.1D", 2.0)
    assert (back.n_timepoints, back.n_rois) == (12, 4)


def test_save_load_without_optional_parts_and_with_zero_rows(tmp_path):
    ts = _series(data=np.zeros((0, 4)))
    ts.save(tmp_path / "empty.npz")
    with np.load(tmp_path / "empty.npz") as npz:
        assert npz["confounds"].shape == (0, 0) and npz["roi_coords"].shape == (0, 3)
    back = ROITimeSeries.load(tmp_path / "empty.npz")
    assert back.data.shape == (0, 4) and back.confounds is None and back.roi_coords is None
    assert back.confound_names == []


def test_load_names_the_file_and_missing_keys(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, data=VALUES, tr=2.0)
    with pytest.raises(DataError, match="keys sfreq, roi_names") as err:
        ROITimeSeries.load(path)
    _assert_names(err, path, None)
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(DataError, match="cannot read") as err:
        ROITimeSeries.load(tmp_path / "text.npz")
    _assert_names(err, tmp_path / "text.npz", None)


@pytest.mark.parametrize("kw, match", [
    ({"roi_names": ["a"]}, "1 roi_names for 4 columns"),
    ({"tr": 0.0}, "positive"),
    ({"confounds": np.zeros((3, 1)), "confound_names": ["x"]}, r"\(12, n_confounds\)"),
    ({"roi_coords": np.zeros((4, 2))}, r"\(4, 3\)"),
])
def test_inconsistent_container_is_a_value_error(kw, match):
    with pytest.raises(ValueError, match=match):
        _series(**kw)


# -------------------------------------------------------------------------- readers


@pytest.mark.parametrize("name, sep, header, prefix", [
    ("s_rois.1D.gz", "\t", ["1", "2", "3", "4"], "#"),   # the PCP layout
    ("s_rois.1D", "  ", None, ""),
    ("s.txt", " ", ["a", "b", "c", "d"], ""),
    ("s.tsv", "\t", ["a", "b", "c", "d"], ""),
    ("s.tsv.gz", "\t", None, ""),
    ("s.csv", ",", ["a", "b", "c", "d"], ""),
    ("s.csv", ",", None, ""),
])
def test_read_roi_timeseries_formats(tmp_path, name, sep, header, prefix):
    path = _write(tmp_path / name, _table(VALUES, sep, header, prefix))
    ts = read_roi_timeseries(path, tr=1.5, subject="s1")
    np.testing.assert_array_equal(ts.data, VALUES)
    assert ts.roi_names == (header if header is not None else ["1", "2", "3", "4"])
    assert (ts.tr, ts.subject, ts.source) == (1.5, "s1", str(path))


def test_1d_comments_before_the_header_and_roi_names_override(tmp_path):
    text = "# written by 3dROIstats\n#1 #2 #3 #4\n" + _table(VALUES, " ", None)
    path = _write(tmp_path / "s.1D", text)
    assert read_roi_timeseries(path, 2.0, "s1").roi_names == ["1", "2", "3", "4"]
    ts = read_roi_timeseries(path, 2.0, "s1", roi_names=["w", "x", "y", "z"])
    assert ts.roi_names == ["w", "x", "y", "z"]
    np.testing.assert_array_equal(ts.data, VALUES)


def test_roi_names_count_mismatch(tmp_path):
    path = _write(tmp_path / "s.tsv", _table(VALUES, "\t", None))
    with pytest.raises(DataError, match="atlas has 3 labels, file has 4 columns") as err:
        read_roi_timeseries(path, 2.0, "s9", roi_names=["a", "b", "c"])
    _assert_names(err, path, "s9")


@pytest.mark.parametrize("name, text, match", [
    ("empty.tsv", "", "no data rows"),
    ("header_only.csv", "a,b\n", "no data rows"),
    ("comments_only.1D", "#1 #2\n", "no data rows"),
    ("cell.tsv", "a\tb\n1\t2\n3\tx7\n", r"'x7' at row 1 \(line 3\), column 1 \('b'\)"),
    ("cell.1D", "1 2\n3 oops\n", r"'oops' at row 1 \(line 2\), column 1"),
    ("ragged.csv", "1,2\n3,4\n5\n", "line 3 has 1 columns where the first data row has 2"),
    ("header.csv", "a,b,c\n1,2\n", "header names 3 columns"),
    ("nan.tsv", "1\t2\nnan\t1\n3\t4\n5\tinf\n", r"rows 1, 3 \(0-based\) hold NaN or inf"),
])
def test_read_roi_timeseries_errors(tmp_path, name, text, match):
    path = _write(tmp_path / name, text)
    with pytest.raises(DataError, match=match) as err:
        read_roi_timeseries(path, 2.0, "s3")
    _assert_names(err, path, "s3")


def test_missing_file_and_bad_gzip(tmp_path):
    with pytest.raises(DataError, match="file not found") as err:
        read_roi_timeseries(tmp_path / "none.1D", 2.0, "s4")
    _assert_names(err, tmp_path / "none.1D", "s4")
    bad = tmp_path / "bad.1D.gz"
    bad.write_text("not gzip")
    with pytest.raises(DataError, match="cannot read") as err:
        read_roi_timeseries(bad, 2.0, "s4")
    _assert_names(err, bad, "s4")
    with pytest.raises(ValueError, match="unknown ROI table ending"):
        read_roi_timeseries(tmp_path / "s.xlsx", 2.0, "s4")


def test_allow_nan_keeps_non_finite_rows(tmp_path):
    path = _write(tmp_path / "nan.tsv", "1\t2\nnan\t1\n")
    ts = read_roi_timeseries(path, 2.0, "s1", allow_nan=True)
    assert np.isnan(ts.data[1, 0]) and ts.data[0, 1] == 2.0


def test_read_confounds(tmp_path):
    path = tmp_path / "conf.tsv"
    path.write_text("trans_x\tfd\tcsf\n0.1\tn/a\t5\n0.2\t0.3\t6\n0.4\t0.5\t7\n")
    values, names = read_confounds(path, subject="01")
    assert names == ["trans_x", "fd", "csf"]
    # the first row's n/a takes the second row's value, as nilearn's fmriprep loader does
    np.testing.assert_array_equal(values, [[0.1, 0.3, 5], [0.2, 0.3, 6], [0.4, 0.5, 7]])
    values, names = read_confounds(path, columns=["csf", "trans_x"], subject="01")
    assert names == ["csf", "trans_x"]
    np.testing.assert_array_equal(values[:, 0], [5, 6, 7])
    with pytest.raises(DataError, match="rot_z not found; the file has trans_x, fd, csf") as e:
        read_confounds(path, columns=["rot_z"], subject="01")
    _assert_names(e, path, "01")


def test_read_confounds_missing_value_after_the_first_row(tmp_path):
    path = tmp_path / "conf.tsv"
    path.write_text("a\tb\n1\t2\n3\tn/a\n")
    with pytest.raises(DataError, match=r"rows 1 \(0-based\) of column\(s\) b") as err:
        read_confounds(path, subject="02")
    _assert_names(err, path, "02")


# ---------------------------------------------------------------------------- NIfTI


AFFINE = np.array([[-3.0, 0, 0, 9], [0, 3, 0, -12], [0, 0, 3, -6], [0, 0, 0, 1]])


def _bold(tmp_path: Path, n: int = 30, tr: float = 2.5, unit: str = "sec") -> tuple[Path, np.ndarray]:
    data = RNG.standard_normal((6, 5, 4, n)).astype(np.float32) + 100
    img = nib.Nifti1Image(data, AFFINE)
    zoom = tr * 1000 if unit == "msec" else tr
    img.header.set_zooms((3.0, 3.0, 3.0, zoom))
    img.header.set_xyzt_units("mm", unit)
    path = tmp_path / f"bold_{unit}.nii.gz"
    nib.save(img, path)
    return path, data.astype(np.float64)


def _labels() -> np.ndarray:
    labels = np.zeros((6, 5, 4), dtype=np.int16)
    labels[:3, :, :2] = 1        # one hemisphere
    labels[:, :2, 2:] = 7        # crosses the midline (x = 0 at index 3)
    labels[3:, 3:, 1:] = 3
    return labels


def test_extract_labels_equals_the_mean_of_the_voxels(tmp_path):
    bold, data = _bold(tmp_path)
    labels = _labels()
    atlas = tmp_path / "atlas.nii.gz"
    nib.save(nib.Nifti1Image(labels, AFFINE), atlas)
    ts = extract_roi_timeseries(bold, atlas, "01")
    expected = np.stack([data[labels == v].mean(axis=0) for v in (1, 3, 7)], axis=1)
    np.testing.assert_allclose(ts.data, expected, rtol=1e-6)
    assert ts.roi_names == ["1", "3", "7"] and ts.tr == 2.5 and ts.source == str(bold)
    from nilearn.plotting import find_parcellation_cut_coords

    np.testing.assert_allclose(ts.roi_coords, find_parcellation_cut_coords(atlas), atol=1e-9)
    named = extract_roi_timeseries(bold, atlas, "01", labels=["v1", "dmn", "sal"], tr=2.0)
    assert named.roi_names == ["v1", "dmn", "sal"] and named.tr == 2.0
    z = extract_roi_timeseries(bold, atlas, "01", standardize=True).data
    # the masker works in float32 on signals of mean 100: agreement to ~1e-4
    np.testing.assert_allclose(z, (expected - expected.mean(0)) / expected.std(0, ddof=1),
                               atol=1e-3)


def test_extract_labels_count_mismatch_and_missing_tr(tmp_path):
    bold, _ = _bold(tmp_path)
    atlas = nib.Nifti1Image(_labels(), AFFINE)
    with pytest.raises(DataError, match="2 labels given for an atlas of 3 regions") as err:
        extract_roi_timeseries(bold, atlas, "05", labels=["a", "b"])
    _assert_names(err, "in-memory atlas", "05")
    no_tr = nib.Nifti1Image(np.ones((6, 5, 4, 3), np.float32), AFFINE)  # nibabel: pixdim 1
    zero_tr = nib.Nifti1Image(np.ones((6, 5, 4, 3), np.float32), AFFINE)
    zero_tr.header.set_zooms((3.0, 3.0, 3.0, 0.0))
    for img in (no_tr, zero_tr):
        with pytest.raises(DataError, match="no repetition time") as err:
            extract_roi_timeseries(img, atlas, "05")
        _assert_names(err, "in-memory image", "05")
    assert extract_roi_timeseries(no_tr, atlas, "05", tr=0.8).tr == 0.8


def test_tr_in_milliseconds_and_confounds_attached(tmp_path):
    bold, _ = _bold(tmp_path, n=8, tr=2.0, unit="msec")
    conf = tmp_path / "conf.tsv"
    pd.DataFrame({"trans_x": np.arange(8.0), "rot_z": np.ones(8)}).to_csv(conf, sep="\t",
                                                                          index=False)
    ts = extract_roi_timeseries(bold, nib.Nifti1Image(_labels(), AFFINE), "01", confounds=conf)
    assert ts.tr == pytest.approx(2.0)
    assert ts.confound_names == ["trans_x", "rot_z"]
    np.testing.assert_array_equal(ts.confounds[:, 0], np.arange(8.0))
    with pytest.raises(DataError, match="confounds have 3 rows but the image has 8 volumes"):
        extract_roi_timeseries(bold, nib.Nifti1Image(_labels(), AFFINE), "01",
                               confounds=np.zeros((3, 2)))


def test_extract_maps_equals_nilearn(tmp_path):
    from nilearn.maskers import NiftiMapsMasker
    from nilearn.plotting import find_probabilistic_atlas_cut_coords

    bold, _ = _bold(tmp_path)
    maps = np.zeros((6, 5, 4, 2))
    maps[:3, ..., 0] = 1.0
    maps[2:, ..., 1] = RNG.random((4, 5, 4))
    maps_img = nib.Nifti1Image(maps, AFFINE)
    ts = extract_roi_timeseries(bold, maps_img, "02", kind="maps", labels=["left", "right"])
    expected = NiftiMapsMasker(maps_img, standardize=None).fit_transform(bold)
    np.testing.assert_array_equal(ts.data, expected)
    np.testing.assert_array_equal(ts.roi_coords, find_probabilistic_atlas_cut_coords(maps_img))
    assert ts.roi_names == ["left", "right"]


@pytest.mark.parametrize("name", ["bold.nii.gz", "bold.nii"])
def test_truncated_or_foreign_image_names_the_file(tmp_path, name):
    # nibabel reads lazily: a truncated file used to fail inside the masker with a bare
    # EOFError (.nii.gz) or ValueError "Whoops, not enough data in file" (.nii)
    bold, _ = _bold(tmp_path)
    img = nib.load(bold)
    whole = tmp_path / name
    nib.save(img, whole)
    raw = whole.read_bytes()
    whole.write_bytes(raw[: len(raw) // 2])
    atlas = tmp_path / "atlas.nii.gz"
    nib.save(nib.Nifti1Image(_labels(), AFFINE), atlas)
    with pytest.raises(DataError, match="cannot read the image") as err:
        extract_roi_timeseries(whole, atlas, "06")
    _assert_names(err, whole, "06")
    assert "4-D NIfTI BOLD image" in str(err.value)
    text = _write(tmp_path / "notes.nii.gz", "not an image\n")
    with pytest.raises(DataError, match="cannot read the image") as err:
        extract_roi_timeseries(text, atlas, "06")
    _assert_names(err, text, "06")


def test_atlas_problems_name_the_atlas(tmp_path):
    bold, _ = _bold(tmp_path)
    missing = tmp_path / "no_atlas.nii.gz"
    with pytest.raises(DataError, match="file not found") as err:
        extract_roi_timeseries(bold, missing, "08")
    _assert_names(err, missing, "08")
    assert str(bold) not in str(err.value)  # used to be reported as the BOLD image's fault
    empty = tmp_path / "empty_atlas.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((6, 5, 4), np.int16), AFFINE), empty)
    with pytest.raises(DataError, match="the labels atlas has no region") as err:
        extract_roi_timeseries(bold, empty, "08")
    _assert_names(err, empty, "08")
    # an atlas in another space: nilearn says "No label left after resampling" or raises a
    # BoundingBoxError, depending on the geometry
    plain = np.diag([3.0, 3.0, 3.0, 1.0])
    image = tmp_path / "plain_bold.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(nib.load(bold).dataobj), plain, nib.load(bold).header),
             image)
    for target, affine in ((image, plain), (bold, AFFINE)):
        far = tmp_path / "far_atlas.nii.gz"
        shifted = affine.copy()
        shifted[:3, 3] += 500.0
        nib.save(nib.Nifti1Image(_labels(), shifted), far)
        with pytest.raises(DataError, match="no atlas region overlaps the image") as err:
            extract_roi_timeseries(target, far, "08")
        _assert_names(err, far, "08")
        assert str(target) in str(err.value)
    cut = tmp_path / "cut_atlas.nii.gz"
    nib.save(nib.Nifti1Image(_labels(), AFFINE), cut)
    raw = cut.read_bytes()
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="cannot read the image") as err:
        extract_roi_timeseries(bold, cut, "08")
    _assert_names(err, cut, "08")
    assert "3-D NIfTI image of integer labels" in str(err.value)


def test_parcellation_cut_coords_equals_nilearn():
    from nilearn.plotting import find_parcellation_cut_coords

    labels = np.zeros((9, 8, 7), dtype=np.int16)
    values = RNG.choice([2, 5, 9, 11, 40], size=(7, 6, 5))
    labels[1:8, 1:7, 1:6] = values
    labels[4, 2:5, 3] = 77  # a small region on the midline
    img = nib.Nifti1Image(labels, np.array([[-2.0, 0, 0, 8], [0, 2, 0, -8],
                                            [0, 0, 2, -6], [0, 0, 0, 1]]))
    got_values, got = parcellation_cut_coords(img)
    ref, ref_values = find_parcellation_cut_coords(img, return_label_names=True)
    assert got_values == [float(v) for v in ref_values] == [2, 5, 9, 11, 40, 77]
    np.testing.assert_allclose(got, ref, atol=1e-9)


# ---------------------------------------------------------------------- participants


def _participants(tmp_path: Path, name: str = "participants.tsv") -> Path:
    table = pd.DataFrame({
        "participant_id": ["sub-007", "sub-010", "sub-002"],
        "age": [30.5, 22.0, None],
        "sex": ["F", "M", "M"],
    })
    path = tmp_path / name
    table.to_csv(path, sep="," if name.endswith(".csv") else "\t", index=False, na_rep="n/a")
    return path


@pytest.mark.parametrize("name", ["participants.tsv", "participants.csv"])
def test_read_participants_order_and_types(tmp_path, name):
    path = _participants(tmp_path, name)
    df = read_participants(path, ["010", "sub-007"], ["sex", "age"])
    assert list(df.index) == ["010", "sub-007"] and df.index.name == "subject"
    assert list(df.columns) == ["sex", "age"]
    assert df.loc["010", "age"] == 22.0 and df.loc["sub-007", "sex"] == "F"


def test_read_participants_errors(tmp_path):
    path = _participants(tmp_path)
    with pytest.raises(DataError, match="column.s. diagnosis not found; the file has "
                                        "participant_id, age, sex") as err:
        read_participants(path, ["007"], ["age", "diagnosis"])
    _assert_names(err, path, None)
    with pytest.raises(DataError, match="subject.s. 099 not in column 'participant_id'") as err:
        read_participants(path, ["007", "099"], ["age"])
    _assert_names(err, path, "099")
    with pytest.raises(DataError, match="column 'age' is empty for subject.s. 002") as err:
        read_participants(path, ["002"], ["age", "sex"])
    _assert_names(err, path, "002")


def test_read_participants_refuses_one_subject_under_two_ids(tmp_path):
    # "01" and "sub-01" are the same subject label; the first used to win silently
    path = tmp_path / "participants.tsv"
    pd.DataFrame({"participant_id": ["01", "02", "sub-01"], "age": [30, 40, 50]}).to_csv(
        path, sep="\t", index=False)
    with pytest.raises(DataError, match=r"subject 01 is listed twice in column "
                                        r"'participant_id' \(data rows 1 and 3\)") as err:
        read_participants(path, ["02"], ["age"])
    _assert_names(err, path, "01")
