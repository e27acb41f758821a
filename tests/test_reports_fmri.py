"""fMRI subject and dataset reports built from hand-written stage outputs (6 ROIs, 8 subjects,
subject 8 excluded for motion)."""

from __future__ import annotations

import html
import json
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from brainmill.datasets.fmri import ROITimeSeries
from brainmill.errors import DataError
from brainmill.io import write_json, write_npz
from brainmill.reports_fmri import (
    build_fmri_dataset_report,
    build_fmri_subject_report,
    carpet_figure,
    decoding_table,
    demographics_table,
    matrices_figure,
    read_participants_table,
)

N_ROIS, N_T, TR = 6, 40, 2.0
ROIS = [f"roi{i}" for i in range(N_ROIS)]
SUBJECTS = [str(i) for i in range(1, 9)]
EXCLUDED, REASON = "8", "mean FD 0.612 mm above the 0.5 mm threshold"
NO_COORDS = "2"  # its connectivity file has 0x0 roi_coords (atlas absent)
STEPS = ["detrend", "band-pass 0.01-0.1 Hz", "confound regression (6 motion)", "z-score"]
GROUP_DIFF_CORR = 0.81234
RESULTS = {  # balanced accuracy mean, sd, per fold, accuracy
    "connectivity": (0.64213, 0.05111, [0.6, 0.7, 0.62], 0.651),
    "latents": (0.55437, 0.04222, [0.5, 0.58, 0.58], 0.561),
    "latents_demographics": (0.58891, 0.03333, [0.55, 0.6, 0.61], 0.592),
}
CONFUSION = [[3, 1], [2, 2]]


def _participants() -> pd.DataFrame:
    return pd.DataFrame({
        "subject": SUBJECTS,
        "participant_id": [f"SITE_{int(s):07d}" for s in SUBJECTS],
        "age": [10.5, 12.0, 14.25, 9.0, 20.0, 22.5, 18.0, 30.0],
        "sex": ["M", "F", "M", "M", "F", "F", "M", "M"],
        "site": ["A", "A", "A", "A", "B", "B", "B", "B"],
        "diagnosis": ["ASD", "ASD", "TC", "TC", "ASD", "ASD", "TC", "TC"],
        "mean_fd": [0.1, 0.12, 0.2, 0.15, 0.3, 0.11, 0.09, 0.612],
        "excluded": [s == EXCLUDED for s in SUBJECTS],
        "reason": [REASON if s == EXCLUDED else "" for s in SUBJECTS],
    })


def _write_subject(sub_dir, subject: str, rng: np.random.Generator) -> dict:
    raw = rng.normal(size=(N_T, N_ROIS)) * 3 + 100
    coords = rng.uniform(-60, 60, size=(N_ROIS, 3))
    excluded = subject == EXCLUDED
    ROITimeSeries(raw, TR, ROIS, subject, f"{subject}_rois.1D", roi_coords=coords
                  ).save(sub_dir / "roi_timeseries.npz")
    cleaned = np.zeros((0, N_ROIS)) if excluded else (raw - raw.mean(0)) / raw.std(0, ddof=1)
    ROITimeSeries(cleaned, TR, ROIS, subject, f"{subject}_rois.1D", roi_coords=coords
                  ).save(sub_dir / "cleaned_timeseries.npz")
    write_json(sub_dir / "qc.json", {
        "subject": subject, "source": f"{subject}_rois.1D", "n_timepoints_in": N_T,
        "n_timepoints_kept": 0 if excluded else N_T,
        "mean_fd": 0.612 if excluded else 0.1234, "excluded": excluded,
        "reason": REASON if excluded else None, "steps": [] if excluded else STEPS, "tr": TR})
    matrix = np.full((N_ROIS, N_ROIS), np.nan) if excluded else np.corrcoef(cleaned.T)
    iu = np.triu_indices(N_ROIS, 1)
    write_npz(sub_dir / "features" / "connectivity.npz", matrix=matrix, vector=matrix[iu],
              kind="correlation", roi_names=np.asarray(ROIS),
              roi_coords=np.zeros((0, 0)) if subject == NO_COORDS else coords,
              excluded=excluded)
    return {"raw": raw, "cleaned": cleaned}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("fmri")
    rng = np.random.default_rng(0)
    res = root / "results" / "fmri"
    series = {s: _write_subject(res / f"sub-{s}", s, rng) for s in SUBJECTS}
    participants = _participants()
    (res / "fmri").mkdir(parents=True)
    participants.to_csv(res / "fmri" / "participants.csv", index=False)

    summary = {"n_subjects": 7, "n_edges": 15, "n_rois": N_ROIS, "roi_names": ROIS,
               "demographics": {"continuous": ["age"], "categorical": ["sex", "site"]},
               "group": "diagnosis", "training_seconds": 3.21, "device": "cpu",
               "corr_connectivity": {"age": 0.71234, "sex": 0.52345, "site": 0.63456},
               "corr_latents": {"age": 0.11234, "sex": 0.09345, "site": 0.10456},
               "reconstruction_rmse": 0.1357, "mean_baseline_rmse": 0.2468}
    write_json(res / "models" / "vae" / "summary.json", summary)
    pd.DataFrame({"epoch": [1, 2, 3], "step": [2, 4, 6], "lr": [1e-3] * 3,
                  "train_loss": [5.0, 3.0, 2.0], "train_rec": [0.5, 0.3, 0.2],
                  "train_cov": [2.0, 1.0, 0.5], "val_loss": [5.5, 3.5, 2.5],
                  "val_rec": [0.55, 0.35, 0.25], "val_cov": [2.2, 1.2, 0.6],
                  "seconds": [1.0, 1.0, 1.0]}).to_csv(res / "models" / "vae" / "history.csv",
                                                       index=False)

    profiles = [{"age": 15.0, "sex": "M", "site": "A", "diagnosis": "ASD"},
                {"age": 15.0, "sex": "F", "site": "B", "diagnosis": "TC"}]
    n_p = len(profiles)
    mats = np.stack([np.corrcoef(rng.normal(size=(N_ROIS, 30))) for _ in range(4 * n_p + 2)])
    real_mean = mats[:n_p].copy()
    real_mean[1] = np.nan  # no real subject matches the second profile
    write_npz(res / "fmri" / "synthetic.npz", profiles_json=json.dumps(profiles),
              synthetic_mean=mats[n_p:2 * n_p], real_mean=real_mean,
              n_real=np.array([1, 0]), group_diff_real=mats[-2] - mats[-1],
              group_diff_synthetic=mats[-1] - mats[-2], group_labels=np.array(["ASD", "TC"]),
              group_diff_corr=GROUP_DIFF_CORR,
              synthetic_examples=mats[2 * n_p:4 * n_p].reshape(n_p, 2, N_ROIS, N_ROIS))
    decoding = {
        "target": "diagnosis", "classes": ["ASD", "TC"], "n_folds": 3, "n_subjects": 7,
        "chance": 0.5, "protocol": "Site-stratified 3-fold cross-validation; the VAE is fitted "
                                  "on each training fold only.",
        "results": {name: {"balanced_accuracy": m, "sd": sd, "per_fold": folds,
                           "accuracy": acc, "confusion": CONFUSION}
                    for name, (m, sd, folds, acc) in RESULTS.items()},
    }
    write_json(res / "fmri" / "decoding.json", decoding)
    return SimpleNamespace(root=root, res=res, series=series, participants=participants,
                           decoding=decoding)


def _subject_report(outputs, subject, out):
    sub = outputs.res / f"sub-{subject}"
    build_fmri_subject_report(
        "fmri", subject, timeseries_path=sub / "roi_timeseries.npz",
        cleaned_path=sub / "cleaned_timeseries.npz", qc_path=sub / "qc.json",
        connectivity_path=sub / "features" / "connectivity.npz", out_html=out,
        title_extra="site A")
    return out.read_text()


def test_included_subject_report(outputs, tmp_path):
    out = tmp_path / "sub-1.html"
    text = _subject_report(outputs, "1", out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub-1.html"]  # nothing left over
    assert "brainmill — fmri — sub-1 — site A" in text
    assert "EXCLUDED" not in text
    assert "0.123" in text  # mean FD 0.1234 in the QC table
    for step in STEPS:
        assert html.escape(step) in text
    assert "Panels: raw ROI series, cleaned ROI series" in text
    assert "Connectivity matrix (correlation)" in text
    assert "Edges above the 99% percentile" in text
    for alt in ("Carpet plot", "Connectivity matrix (correlation)", "Connectome"):
        assert f'class="figure-img img-fluid rounded mx-auto my-0 d-block" alt="{alt}"' in text


def test_subject_without_coords_notes_it(outputs, tmp_path):
    text = _subject_report(outputs, NO_COORDS, tmp_path / f"sub-{NO_COORDS}.html")
    assert "No ROI coordinates were stored" in text
    assert "Connectivity matrix (correlation)" in text


def test_excluded_subject_report(outputs, tmp_path):
    text = _subject_report(outputs, EXCLUDED, tmp_path / f"sub-{EXCLUDED}.html")
    assert f"sub-{EXCLUDED} — site A (EXCLUDED)" in text
    assert "EXCLUDED from the group analysis" in text
    assert html.escape(REASON) in text
    assert "Panels: raw ROI series." in text  # the cleaned series has 0 rows
    assert "No connectivity: the subject was excluded" in text

    # an excluded subject whose connectivity was never written still gets a report
    sub = outputs.res / f"sub-{EXCLUDED}"
    build_fmri_subject_report(
        "fmri", EXCLUDED, timeseries_path=sub / "roi_timeseries.npz",
        cleaned_path=sub / "missing.npz", qc_path=sub / "qc.json",
        connectivity_path=sub / "features" / "missing.npz", out_html=tmp_path / "x.html")
    assert "No connectivity file was written" in (tmp_path / "x.html").read_text()


def test_included_subject_needs_its_files(outputs, tmp_path):
    sub = outputs.res / "sub-1"
    files = {"timeseries_path": sub / "roi_timeseries.npz",
             "cleaned_path": sub / "cleaned_timeseries.npz",
             "connectivity_path": sub / "features" / "connectivity.npz"}
    for key in files:
        with pytest.raises(DataError, match="nope.npz"):
            build_fmri_subject_report("fmri", "1", qc_path=sub / "qc.json",
                                      out_html=tmp_path / "sub-1.html",
                                      **{**files, key: tmp_path / "nope.npz"})
    assert not (tmp_path / "sub-1.html").exists()


def test_carpet_shows_each_roi_z_scored(outputs):
    raw = outputs.series["1"]["raw"]
    fig = carpet_figure([("raw", raw)], TR)
    try:
        shown = np.asarray(fig.axes[0].images[0].get_array())
        expected = ((raw - raw.mean(0)) / raw.std(0)).T
        np.testing.assert_allclose(shown, expected)
        assert fig.axes[0].images[0].get_extent()[:2] == [0, N_T * TR]
    finally:
        plt.close(fig)


def test_matrices_share_a_symmetric_scale_without_diagonal():
    a = np.array([[1.0, 0.3, -0.2], [0.3, 1.0, 0.1], [-0.2, 0.1, 1.0]])
    b = np.array([[1.0, -0.6, 0.0], [-0.6, 1.0, 0.4], [0.0, 0.4, 1.0]])
    fig = matrices_figure([("a", a), ("b", b), ("none", None)])
    try:
        images = [im for ax in fig.axes for im in ax.images]
        assert len(images) == 2
        for im, m in zip(images, (a, b), strict=True):
            assert im.get_clim() == (-0.6, 0.6)
            np.testing.assert_allclose(np.asarray(im.get_array()), m - np.eye(3))
    finally:
        plt.close(fig)


def test_demographics_table(outputs, tmp_path):
    path = tmp_path / "p.csv"
    outputs.participants.to_csv(path, index=False)
    df = read_participants_table(path)
    assert df.index.tolist() == SUBJECTS
    assert df["excluded"].tolist() == [s == EXCLUDED for s in SUBJECTS]
    table = demographics_table(df).set_index(["site", "diagnosis"])
    b_tc = table.loc[("B", "TC")]  # subjects 7 (included) and 8 (excluded)
    assert (b_tc["n"], b_tc["n_excluded"], b_tc["n_included"]) == (2, 1, 1)
    assert (b_tc["sex M"], b_tc["sex F"]) == (1, 0)
    assert b_tc["age (mean ± sd)"] == "18.0"
    a_asd = table.loc[("A", "ASD")]  # ages 10.5, 12.0
    assert a_asd["age (mean ± sd)"] == f"11.2 ± {np.std([10.5, 12.0], ddof=1):.1f}"
    everyone = table.loc[("all", "all")]
    ages = outputs.participants["age"][:7]
    assert everyone["age (mean ± sd)"] == f"{ages.mean():.1f} ± {ages.std(ddof=1):.1f}"
    assert (everyone["n"], everyone["n_excluded"], everyone["sex M"], everyone["sex F"]) == (
        8, 1, 4, 3)


def test_dataset_report(outputs, tmp_path):
    res = outputs.res
    out = tmp_path / "index.html"
    table = build_fmri_dataset_report(
        "fmri", participants_csv=res / "fmri" / "participants.csv",
        vae_summary_json=res / "models" / "vae" / "summary.json",
        vae_history_csv=res / "models" / "vae" / "history.csv",
        synthetic_npz=res / "fmri" / "synthetic.npz", decoding_json=res / "fmri" / "decoding.json",
        out_html=out, subjects=SUBJECTS, config_json={"atlas": "cc200-test"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.html"]
    text = out.read_text()

    assert table["feature_set"].tolist() == list(RESULTS)
    for _, row in table.iterrows():
        mean, sd, folds, acc = RESULTS[row["feature_set"]]
        assert (row["balanced_accuracy_mean"], row["balanced_accuracy_sd"],
                row["accuracy_mean"]) == (mean, sd, acc)
        assert row["n_folds"] == len(folds) and row["chance"] == 0.5
        assert f"{mean:.3f}" in text and f"{sd:.3f}" in text
    assert html.escape(outputs.decoding["protocol"]) in text
    assert text.count("Confusion: ") >= 3

    for s in SUBJECTS:
        assert f"href='sub-{s}.html'" in text or f'href="sub-{s}.html"' in text
    assert "7 included, 1 excluded" in text
    assert html.escape(REASON) in text and "SITE_0000008" in text
    assert f"{GROUP_DIFF_CORR:.3f}" in text
    assert html.escape("Group difference ASD − TC") in text
    assert "n_real=1" in text and "n_real=0" in text
    for value in ("0.712", "0.112", "0.523", "0.093"):  # max |corr| before / after
        assert value in text
    assert "0.136" in text and "0.247" in text  # reconstruction vs mean baseline RMSE
    assert "Training curves" in text
    assert "cc200-test" in text  # config under Provenance


def test_dataset_report_without_group_or_vae(outputs, tmp_path):
    res = outputs.res
    with np.load(res / "fmri" / "synthetic.npz") as f:
        arrays = {k: f[k] for k in f.files}
    arrays.update(group_diff_real=np.full((N_ROIS, N_ROIS), np.nan),
                  group_diff_synthetic=np.full((N_ROIS, N_ROIS), np.nan),
                  group_labels=np.array([], dtype=str), group_diff_corr=np.nan)
    write_npz(tmp_path / "synthetic.npz", **arrays)
    table = build_fmri_dataset_report(
        "fmri", participants_csv=res / "fmri" / "participants.csv", vae_summary_json=None,
        vae_history_csv=None, synthetic_npz=tmp_path / "synthetic.npz", decoding_json=None,
        out_html=tmp_path / "index.html", subjects=SUBJECTS)
    text = (tmp_path / "index.html").read_text()
    assert table.empty and list(table.columns)[:2] == ["feature_set", "balanced_accuracy_mean"]
    assert "no group variable" in text
    assert "Training curves" not in text and "Decoding" not in text


def test_decoding_table_reads_nested_scores(outputs):
    nested = {**outputs.decoding, "results": {
        name: {"balanced_accuracy": {"mean": m, "sd": sd, "per_fold": folds},
               "accuracy": {"mean": acc}, "confusion": CONFUSION}
        for name, (m, sd, folds, acc) in RESULTS.items()}}
    pd.testing.assert_frame_equal(decoding_table(nested), decoding_table(outputs.decoding))
