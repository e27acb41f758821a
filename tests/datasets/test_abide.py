"""ABIDE PCP CC200 loader on a tiny fake copy written in the real layout."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from brainmill.datasets import abide
from brainmill.datasets.fmri import parcellation_cut_coords
from brainmill.errors import DataError

ROWS = [
    # participant_id, site, age, sex, diagnosis, mean_fd, n_timepoints, in_pcp_release
    ("NYU_0050952", "NYU", 8.74, "F", "ASD", 0.37, 6, "True"),
    ("NYU_0050953", "NYU", 11.76, "F", "ASD", 0.06, 6, "False"),
    ("Pitt_0050003", "PITT", 24.45, "M", "TC", 0.32, 7, "True"),
]


def _write_abide(root: Path, atlas: bool = False, seed: int = 0) -> dict[str, np.ndarray]:
    """participants.tsv + rois_cc200/<FILE_ID>_rois_cc200.1D.gz (+ a fake 200-label atlas)."""
    rng = np.random.default_rng(seed)
    (root / "rois_cc200").mkdir(parents=True)
    records, written = [], {}
    for pid, site, age, sex, dx, fd, n, release in ROWS:
        file = f"rois_cc200/{pid}_rois_cc200.1D.gz"
        values = np.round(rng.standard_normal((n, abide.N_ROIS)) * 50, 6)
        with gzip.open(root / file, "wt") as fh:
            fh.write("\t".join(f"#{i}" for i in range(1, abide.N_ROIS + 1)) + "\n")
            for row in values:
                fh.write("\t".join(repr(float(v)) for v in row) + "\n")
        written[pid.split("_")[1]] = values
        records.append((pid, file, site, age, sex, dx, fd, n, release))
    pd.DataFrame(records, columns=abide.COLUMNS).to_csv(root / abide.PARTICIPANTS, sep="\t",
                                                        index=False)
    if atlas:
        labels = np.zeros((22, 12, 3), dtype=np.int16)
        labels[1:21, 1:11, 1] = np.arange(1, 201).reshape(20, 10)
        affine = np.array([[-3.0, 0, 0, 30], [0, 3, 0, -15], [0, 0, 3, -3], [0, 0, 0, 1]])
        nib.save(nib.Nifti1Image(labels, affine), root / abide.ATLAS)
    return written


def test_tr_table():
    assert abide.ABIDE_TR == {"NYU": 2.0, "PITT": 1.5}


def test_participants_index_types_and_filters(tmp_path):
    _write_abide(tmp_path)
    df = abide.abide_participants(tmp_path)
    assert list(df.index) == ["0050952", "0050003"] and df.index.name == "subject"
    assert list(df.columns) == list(abide.COLUMNS)
    assert df["age"].dtype == float and df["mean_fd"].dtype == float
    assert df["n_timepoints"].dtype == np.int64 and df["in_pcp_release"].dtype == bool
    assert df.loc["0050003", "site"] == "PITT" and df.loc["0050952", "sex"] == "F"
    everyone = abide.abide_participants(tmp_path, pcp_release_only=False)
    assert list(everyone.index) == ["0050952", "0050953", "0050003"]
    assert list(abide.abide_participants(tmp_path, sites=["pitt"]).index) == ["0050003"]
    with pytest.raises(DataError, match="site.s. UCLA not found") as err:
        abide.abide_participants(tmp_path, sites=["UCLA"])
    assert "expected sites among NYU, PITT" in str(err.value)


def test_missing_folder_or_table_says_what_layout_is_expected(tmp_path):
    with pytest.raises(DataError, match="the ABIDE folder does not exist") as err:
        abide.abide_participants(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value)
    assert "rois_cc200/<FILE_ID>_rois_cc200.1D.gz" in str(err.value)
    with pytest.raises(DataError, match="participants.tsv not found") as err:
        abide.abide_participants(tmp_path)
    assert "expected a folder holding participants.tsv" in str(err.value)


def test_bad_participants_values(tmp_path):
    _write_abide(tmp_path)
    table = pd.read_csv(tmp_path / abide.PARTICIPANTS, sep="\t", dtype=str)
    table.loc[1, "diagnosis"] = "autism"
    table.to_csv(tmp_path / abide.PARTICIPANTS, sep="\t", index=False)
    with pytest.raises(DataError, match="'diagnosis' holds other values for NYU_0050953") as e:
        abide.abide_participants(tmp_path)
    assert "subject NYU_0050953" in str(e.value) and "expected one of ASD, TC" in str(e.value)


def test_load_subject(tmp_path):
    written = _write_abide(tmp_path)
    ts = abide.load_abide_subject(tmp_path, "0050952")
    np.testing.assert_array_equal(ts.data, written["0050952"])
    assert ts.tr == 2.0 and ts.roi_names == [str(i) for i in range(1, 201)]
    assert ts.subject == "0050952" and ts.roi_coords is None and ts.confounds is None
    assert ts.source == str(tmp_path / "rois_cc200" / "NYU_0050952_rois_cc200.1D.gz")
    pitt = abide.load_abide_subject(tmp_path, "Pitt_0050003")  # a participant id works too
    assert pitt.tr == 1.5 and pitt.n_timepoints == 7


def test_load_subject_coords_from_the_atlas(tmp_path):
    _write_abide(tmp_path, atlas=True)
    ts = abide.load_abide_subject(tmp_path, "0050953")  # outside the PCP release: loadable
    values, coords = parcellation_cut_coords(tmp_path / abide.ATLAS)
    assert values == list(range(1, 201))
    np.testing.assert_array_equal(ts.roi_coords, coords)
    # label 12 is the single voxel (2, 2, 1) of an x-flipped grid: x = 30 - 6, y = -15 + 6
    np.testing.assert_allclose(ts.roi_coords[11], [24.0, -9.0, 0.0])


def test_load_subject_errors(tmp_path):
    _write_abide(tmp_path)
    with pytest.raises(DataError, match="subject not listed") as err:
        abide.load_abide_subject(tmp_path, "0059999")
    assert "subject 0059999" in str(err.value) and "participants.tsv" in str(err.value)
    table = pd.read_csv(tmp_path / abide.PARTICIPANTS, sep="\t", dtype=str)
    table.loc[0, "n_timepoints"] = "9"
    table.loc[2, "site"] = "UCLA"
    table.to_csv(tmp_path / abide.PARTICIPANTS, sep="\t", index=False)
    with pytest.raises(DataError, match="6 rows") as err:
        abide.load_abide_subject(tmp_path, "0050952")
    text = str(err.value)
    assert "subject 0050952" in text and "NYU_0050952_rois_cc200.1D.gz" in text
    assert "expected 9 volumes" in text
    with pytest.raises(DataError, match="no repetition time known for site UCLA"):
        abide.load_abide_subject(tmp_path, "0050003")
