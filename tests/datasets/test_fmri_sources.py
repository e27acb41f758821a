"""The configured fMRI sources through one entry point: subjects, time series, participants."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from brainmill.config import validate_config
from brainmill.datasets.fmri_sources import dataset_subjects, load_subject, participants
from brainmill.errors import DataError

AFFINE = np.diag([3.0, 3.0, 3.0, 1.0])


def _dataset(source: dict, **extra):
    cfg = validate_config({"seed": 1, "datasets": {"d": {
        "modality": "fmri", "source": source, **extra}}})
    return cfg.datasets["d"]


def _participants(root, ids, **columns) -> None:
    table = {"participant_id": ids, "age": [20.0 + i for i in range(len(ids))],
             "sex": ["M", "F"] * (len(ids) // 2), "site": ["X"] * len(ids),
             "diagnosis": ["ASD", "TC"] * (len(ids) // 2), **columns}
    pd.DataFrame(table).to_csv(root / "participants.tsv", sep="\t", index=False)


def test_nifti_source_masks_each_subject_with_the_atlas(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.zeros((4, 4, 3), dtype=np.int16)
    labels[:2] = 1
    labels[2:, :2] = 2
    nib.save(nib.Nifti1Image(labels, AFFINE), tmp_path / "atlas.nii.gz")
    data = {}
    for sub in ("01", "02"):
        bold = (rng.standard_normal((4, 4, 3, 40)) + 50).astype(np.float32)
        img = nib.Nifti1Image(bold, AFFINE)
        img.header.set_zooms((3.0, 3.0, 3.0, 2.0))
        img.header.set_xyzt_units("mm", "sec")
        (tmp_path / f"sub-{sub}").mkdir()
        nib.save(img, tmp_path / f"sub-{sub}" / "bold.nii.gz")
        data[sub] = bold.astype(np.float64)
        pd.DataFrame({"tx": rng.standard_normal(40)}).to_csv(
            tmp_path / f"sub-{sub}" / "conf.tsv", sep="\t", index=False)
    _participants(tmp_path, ["sub-01", "sub-02"], mean_fd=[0.1, 0.2])
    ds = _dataset({"kind": "nifti", "root": str(tmp_path), "pattern": "sub-{subject}/bold.nii.gz",
                   "atlas": "atlas.nii.gz", "labels": ["left", "right"],
                   "confounds": "sub-{subject}/conf.tsv", "participants": "participants.tsv"})
    assert dataset_subjects(ds, 1) == ["01", "02"]
    ts = load_subject(ds, "02", 1)
    expected = np.stack([data["02"][labels == v].mean(0) for v in (1, 2)], axis=1)
    np.testing.assert_allclose(ts.data, expected, rtol=1e-5)
    assert ts.roi_names == ["left", "right"] and ts.tr == 2.0
    assert ts.confounds.shape == (40, 1) and ts.confound_names == ["tx"]
    table = participants(ds, ["01", "02"], 1)
    assert list(table.index) == ["01", "02"]
    assert list(table.columns) == ["age", "sex", "site", "diagnosis", "mean_fd"]
    with pytest.raises(DataError, match="sub-03/bold.nii.gz does not exist"):
        load_subject(ds, "03", 1)


def test_roi_files_source_and_missing_demographics(tmp_path):
    for sub in ("1", "2"):
        np.savetxt(tmp_path / f"s{sub}.csv", np.arange(60.0).reshape(20, 3) * int(sub),
                   delimiter=",", header="a,b,c", comments="")
    _participants(tmp_path, ["1", "2"])
    ds = _dataset({"kind": "roi_files", "root": str(tmp_path), "pattern": "s{subject}.csv",
                   "tr": 1.5, "participants": "participants.tsv"})
    ts = load_subject(ds, "2", 1)
    assert ts.roi_names == ["a", "b", "c"] and ts.tr == 1.5
    np.testing.assert_array_equal(ts.data, np.arange(60.0).reshape(20, 3) * 2)
    ds_age = _dataset({"kind": "roi_files", "root": str(tmp_path), "pattern": "s{subject}.csv",
                       "tr": 1.5, "participants": "participants.tsv"},
                      vae={"continuous": ["age", "iq"]})
    with pytest.raises(DataError, match="iq") as err:
        participants(ds_age, ["1", "2"], 1)
    assert "participants.tsv" in str(err.value)
    with pytest.raises(DataError, match="participant"):
        participants(ds, ["1", "7"], 1)


def test_synthetic_and_abide_subjects(tmp_path):
    ds = _dataset({"kind": "synthetic_fmri", "n_subjects": 6}, subjects=[2, 5])
    assert dataset_subjects(ds, 0) == ["2", "5"]
    assert dataset_subjects(_dataset({"kind": "synthetic_fmri", "n_subjects": 6}), 0) == \
        ["1", "2", "3", "4", "5", "6"]
    with pytest.raises(DataError, match="participants.tsv"):
        dataset_subjects(_dataset({"kind": "abide", "path": str(tmp_path)}), 0)


@pytest.mark.parametrize("bad,shown", [("", "''"), ("sub-NYU_01", "'sub-NYU_01'"),
                                       ("n/a", "'n/a'")])
def test_all_subjects_checks_the_ids_of_the_participants_table(tmp_path, bad, shown):
    # a blank id used to crash the DAG with AttributeError; 'NYU_01' became a subject label
    # the rules' wildcards cannot match (MissingInputException)
    source = {"kind": "roi_files", "root": str(tmp_path), "pattern": "s{subject}.csv",
              "tr": 1.5, "participants": "participants.tsv"}
    _participants(tmp_path, ["sub-01", " 02 ", "03", "04"])
    assert dataset_subjects(_dataset(source), 1) == ["01", "02", "03", "04"]
    _participants(tmp_path, ["sub-01", "02", bad, "04"])
    with pytest.raises(DataError) as err:
        dataset_subjects(_dataset(source), 1)
    text = str(err.value)
    assert str(tmp_path / "participants.tsv") in text
    assert f"1 id(s) in column 'participant_id' are not subject labels (data row 3: {shown})" \
        in text
    assert "(expected one subject label per row" in text


def test_all_subjects_refuses_an_id_listed_twice(tmp_path):
    _participants(tmp_path, ["sub-01", "02", "01", "04"])
    ds = _dataset({"kind": "nifti", "root": str(tmp_path), "pattern": "sub-{subject}.nii.gz",
                   "atlas": "atlas.nii.gz", "participants": "participants.tsv"})
    with pytest.raises(DataError, match=r"subject 01, file .*participants.tsv: subject 01 is "
                                        r"listed twice in column 'participant_id' \(data rows "
                                        r"1 and 3\)"):
        dataset_subjects(ds, 1)


def test_two_blank_ids_are_named_as_not_labels_rather_than_as_a_duplicate(tmp_path):
    source = {"kind": "roi_files", "root": str(tmp_path), "pattern": "s{subject}.csv",
              "tr": 1.5, "participants": "participants.tsv"}
    _participants(tmp_path, ["01", "", "03", " "])
    with pytest.raises(DataError, match=r"2 id\(s\) in column 'participant_id' are not subject "
                                        r"labels \(data row 2: ''; data row 4: ' '\)"):
        dataset_subjects(_dataset(source), 1)
