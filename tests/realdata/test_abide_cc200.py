"""ABIDE I PCP CC200 (NYU + PITT) from ../shared/data/abide-cc200: counts, layout, cleaning.

Counts measured on the shared copy: 241 participants (NYU 184, PITT 57), 231 in the PCP
release selection; every NYU file has 176 volumes and every PITT file 196. Three files hold a
constant (all-zero) CC200 region: NYU_0051062 and NYU_0051118 (region 43), Pitt_0050045
(regions 52 and 176).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brainmill.datasets.abide import abide_participants, load_abide_subject
from brainmill.features.connectivity import connectivity_matrix
from brainmill.preprocessing.fmri import CleanSettings, clean_timeseries

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def root(shared_data) -> Path:
    folder = shared_data / "abide-cc200"
    if not folder.is_dir():
        pytest.skip("../shared/data/abide-cc200 is absent; the ABIDE tests need it")
    return folder


def test_participants_counts(root):
    everyone = abide_participants(root, pcp_release_only=False)
    assert len(everyone) == 241
    assert everyone["site"].value_counts().to_dict() == {"NYU": 184, "PITT": 57}
    released = abide_participants(root)
    assert len(released) == 231 and released["in_pcp_release"].all()
    assert released["site"].value_counts().to_dict() == {"NYU": 175, "PITT": 56}
    assert set(everyone["sex"]) == {"M", "F"} and set(everyone["diagnosis"]) == {"ASD", "TC"}
    assert everyone.loc["0050952", "participant_id"] == "NYU_0050952"
    assert everyone.loc["0050952", "age"] == pytest.approx(8.74)
    assert everyone.groupby("site")["n_timepoints"].unique().map(list).to_dict() == {
        "NYU": [176], "PITT": [196]}
    assert len(abide_participants(root, sites=["PITT"], pcp_release_only=False)) == 57


def test_nyu_and_pitt_subjects(root):
    nyu = load_abide_subject(root, "0050952")
    assert nyu.data.shape == (176, 200) and nyu.tr == 2.0
    assert nyu.roi_names == [str(i) for i in range(1, 201)]
    with gzip.open(root / "rois_cc200" / "NYU_0050952_rois_cc200.1D.gz", "rt") as fh:
        fh.readline()  # '#1 #2 …' header
        first = np.array(fh.readline().split(), dtype=float)
    np.testing.assert_array_equal(nyu.data[0], first)
    pitt = load_abide_subject(root, "0050003")
    assert pitt.data.shape == (196, 200) and pitt.tr == 1.5
    assert nyu.roi_coords.shape == (200, 3) and np.isfinite(nyu.roi_coords).all()
    np.testing.assert_array_equal(pitt.roi_coords, nyu.roi_coords)
    # every region centre lies in MNI space, both hemispheres present
    assert np.abs(nyu.roi_coords).max() < 110
    assert (nyu.roi_coords[:, 0] < 0).any() and (nyu.roi_coords[:, 0] > 0).any()


def test_coords_equal_nilearn_on_a_subset_of_regions(root):
    from nilearn.plotting import find_parcellation_cut_coords

    atlas = nib.load(root / "CC200.nii.gz")
    data = np.asarray(atlas.dataobj)
    subset = nib.Nifti1Image(np.where(data <= 12, data, 0).astype(np.int16), atlas.affine)
    ref = find_parcellation_cut_coords(subset)
    np.testing.assert_allclose(load_abide_subject(root, "0050952").roi_coords[:12], ref,
                               atol=1e-9)


def test_cleaned_subject_and_connectivity(root):
    participants = abide_participants(root)
    ts = load_abide_subject(root, "0050952")
    cleaned, qc = clean_timeseries(ts, CleanSettings(),
                                   mean_fd=participants.loc["0050952", "mean_fd"])
    assert not qc["excluded"] and qc["n_timepoints_kept"] == 176
    np.testing.assert_allclose(cleaned.data.mean(axis=0), 0, atol=1e-10)
    np.testing.assert_allclose(cleaned.data.std(axis=0, ddof=1), 1, atol=1e-10)
    matrix = connectivity_matrix(cleaned.data)
    assert matrix.shape == (200, 200) and np.isfinite(matrix).all()
    np.testing.assert_allclose(np.diag(matrix), 1.0)


def test_constant_region_and_motion_exclusion(root):
    cleaned, qc = clean_timeseries(load_abide_subject(root, "0051062"), CleanSettings(),
                                   mean_fd=0.04)
    assert qc["constant_rois"] == ["43"] and np.all(cleaned.data[:, 42] == 0)
    participants = abide_participants(root)
    movers = participants.index[participants["mean_fd"] > 0.5].tolist()
    assert "0050039" in movers
    excluded, qc = clean_timeseries(load_abide_subject(root, "0050039"), CleanSettings(),
                                    mean_fd=participants.loc["0050039", "mean_fd"])
    assert excluded is None and qc["reason"].startswith("mean FD 0.602 mm above")
