"""``brainmill validate``: the problems a run would hit, found before it starts.

The broken inputs are those of the catalogue (``test_eeg_inputs.py``, ``test_fmri_inputs.py``,
``test_dataset_inputs.py``); here each must show up as a row naming the subject, the file and
what was expected, and the command must exit with status 1. Good inputs and the shipped configs
(on the real recordings in ``../shared/data``) must pass.
"""

from __future__ import annotations

from pathlib import Path

import mne
import pytest
import yaml
from reliability_bench import (
    BROKEN,
    ROI_NAMES,
    roi_table,
    synthetic_raw,
    write_participants,
    write_recording,
    write_roi_file,
)

from brainmill.cli import main
from brainmill.config import FMRIDecodingConfig, load_config
from brainmill.validation import Problem, format_problems, validate, validate_file

REPO = Path(__file__).resolve().parents[2]
EDF = f"sub-{BROKEN}_eeg.edf"


def _errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.level == "error"]


def test_good_eeg_data_has_no_problem(eeg):
    write_recording(synthetic_raw(BROKEN), eeg.root / f"sub-{BROKEN}" / EDF)
    assert validate(eeg.config()) == []


def _truncated(eeg):
    data = eeg.good_edf.read_bytes()
    (eeg.root / f"sub-{BROKEN}" / EDF).write_bytes(data[: len(data) // 2])


def _no_events(eeg):
    raw = synthetic_raw(BROKEN)
    raw.set_annotations(None)
    write_recording(raw, eeg.root / f"sub-{BROKEN}" / EDF)


def _other_labels(eeg):
    raw = synthetic_raw(BROKEN)
    raw.annotations.rename({"left_hand": "T1", "right_hand": "T2"})
    write_recording(raw, eeg.root / f"sub-{BROKEN}" / EDF)


def _two_rates(eeg):
    write_recording(synthetic_raw(BROKEN), eeg.root / f"sub-{BROKEN}" / "sub-2_run-1_eeg.edf")
    write_recording(synthetic_raw(BROKEN, sfreq=200.0),
                    eeg.root / f"sub-{BROKEN}" / "sub-2_run-2_eeg.edf")


def _not_in_montage(eeg):
    raw = synthetic_raw(BROKEN)
    raw.rename_channels({raw.ch_names[0]: "XYZ1"})
    write_recording(raw, eeg.root / f"sub-{BROKEN}" / EDF)


def _too_short(eeg):
    raw = synthetic_raw(BROKEN).crop(0, 0.99)
    raw.set_annotations(mne.Annotations([0.2], [0.1], ["left_hand"]))
    write_recording(raw, eeg.root / f"sub-{BROKEN}" / EDF)


def _few_trials(eeg):
    raw = synthetic_raw(BROKEN)
    ann = raw.annotations.copy()
    ann.delete([i for i, d in enumerate(ann.description) if d == "right_hand"][2:])
    raw.set_annotations(ann)
    write_recording(raw, eeg.root / f"sub-{BROKEN}" / EDF)


def _empty(eeg):
    (eeg.root / f"sub-{BROKEN}" / EDF).write_bytes(b"")


CASES = {
    "truncated_edf": (_truncated, "truncated or corrupt"),
    "zero_length_file": (_empty, "the file is empty (0 bytes)"),
    "no_events": (_no_events, "holds no events"),
    "labels_not_in_config": (_other_labels, "none of the configured events"),
    "mismatched_sampling_rates": (_two_rates, "sampling frequency 200.0 Hz differs"),
    "channel_missing_from_montage": (_not_in_montage, "['XYZ1'] are not in the 'standard_1005'"),
    "shorter_than_one_epoch": (_too_short, "shorter than one epoch window"),
    "class_with_fewer_trials_than_folds": (_few_trials, "class 'right_hand' has 2 trial(s) in "
                                                        "session '1', too few for 3-fold"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_broken_eeg_subject_is_one_row_naming_subject_and_file(eeg, case, tmp_path, capsys):
    breaker, phrase = CASES[case]
    breaker(eeg)
    cfg = eeg.config()
    problems = validate(cfg)
    (row,) = _errors(problems)
    assert row.dataset == "edf" and row.subject == BROKEN, row
    assert str(eeg.root / f"sub-{BROKEN}") in row.file, row
    assert phrase in row.problem, row
    assert "expected" in row.problem or row.hint, row

    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    assert main(["validate", str(config)]) == 1
    out = capsys.readouterr().out
    assert "level" in out and "error" in out and "1 error(s)" in out


def test_bad_fmri_data_is_listed_per_subject(fmri):
    write_roi_file(fmri.root / f"sub-{BROKEN}.tsv", roi_table(seed=2), ROI_NAMES, nan_rows=(4,))
    problems = validate(fmri.config())
    (row,) = _errors(problems)
    assert row.subject == BROKEN and row.file.endswith(f"sub-{BROKEN}.tsv")
    assert "rows 4 (0-based) hold NaN or inf" in row.problem
    # the same data with on_nan: exclude is a warning: the subject will be excluded, recorded
    (warn,) = validate(fmri.config(preprocessing={"on_nan": "exclude"}))
    assert warn.level == "warning" and warn.subject == BROKEN
    assert "will be excluded: NaN or inf in 1 rows" in warn.problem


def test_fmri_participants_and_roi_problems(fmri):
    write_roi_file(fmri.root / f"sub-{BROKEN}.tsv", roi_table(n_rois=4, seed=2), ROI_NAMES[:4])
    table = write_participants(fmri.root / "participants-val.tsv", subjects=("1", "3"))
    problems = validate(fmri.config(participants=table.name))
    texts = [p.problem for p in _errors(problems)]
    assert any("subject(s) 2 not in column 'participant_id'" in t for t in texts), texts
    assert any("subjects have different ROIs" in t and "4 ROIs" in t for t in texts), texts


def test_impossible_fmri_decoding_folds(fmri):
    """Too few subjects per (site, diagnosis) cell for the folds: found before any training."""
    write_roi_file(fmri.root / f"sub-{BROKEN}.tsv", roi_table(seed=2), ROI_NAMES)
    cfg = fmri.config()
    cfg.datasets["rois"].decoding = FMRIDecodingConfig(target="diagnosis", n_folds=3)
    (row,) = _errors(validate(cfg))
    assert "combination(s)" in row.problem and "fewer subjects than folds" in row.problem
    assert "expected at least n_splits=3 subjects each" in row.problem


def test_invalid_config_is_a_table_of_key_paths(tmp_path, capsys):
    base = {"source": {"kind": "synthetic"}, "subjects": [1],
            "events": {"left_hand": "left_hand", "right_hand": "right_hand"}}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"datasets": {
        "a": {**base, "evaluation": {"n_folds": "five"}},
        "b": {**base, "preprocesing": {}}}}))
    cfg, problems = validate_file(path)
    assert cfg is None
    assert [p.problem.split(":")[0] for p in problems] == ["datasets.a.evaluation.n_folds",
                                                          "datasets.b.preprocesing"]
    assert all(p.file == str(path) for p in problems)
    assert main(["validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert "invalid configuration (2 problem(s))" in out and "Traceback" not in out


def test_table_wraps_long_cells_in_their_columns():
    p = Problem("edf", "2", "/a/very/long/path/" * 5 + "sub-2.edf", "x " * 80, "do this", "error")
    lines = format_problems([p], width=100).splitlines()
    assert lines[0].split() == ["level", "dataset", "subject", "file", "problem", "hint"]
    assert all(len(line) <= 100 for line in lines) and len(lines) > 3
    assert "sub-2.edf" in "".join(lines).replace(" ", "")


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["physionet", "bonn", "dreams", "abide"])
def test_shipped_real_data_configs_validate(shared_data, monkeypatch, name):
    monkeypatch.setenv("MNE_DATA", str(shared_data))
    cfg = load_config(REPO / "config" / f"{name}.yaml")
    if name == "abide":  # all 241 subjects take 30 s: 12 of each site, too few for 5 folds
        from brainmill.datasets.fmri_sources import dataset_subjects

        ds = cfg.datasets["abide"]
        subjects = dataset_subjects(ds, cfg.seed)
        ds.subjects = subjects[:12] + subjects[-12:]
        ds.decoding.n_folds = 2
    problems = validate(cfg)
    assert _errors(problems) == [], format_problems(problems)


def test_default_config_validates():
    cfg, problems = validate_file(REPO / "config" / "config.yaml")
    assert cfg is not None and _errors(problems) == [], format_problems(problems)
