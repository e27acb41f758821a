"""Catalogue of data sets that cannot be cross-validated: rejected before a score is written.

Subject 2 is broken; the ``eeg`` fixture checks that subjects 1 and 3 keep their outputs.
"""

from __future__ import annotations

import mne
from reliability_bench import BROKEN, synthetic_raw, write_recording

from brainmill.io import read_json

EDF = f"sub-{BROKEN}_eeg.edf"


def test_empty_after_rejection_all_epochs_dropped(eeg):
    raw = synthetic_raw(BROKEN)
    raw._data *= 100  # every epoch far above reject_uv, every channel alike (none is "noisy")
    path = str(write_recording(raw, eeg.root / f"sub-{BROKEN}" / EDF))
    outcome = eeg.run(BROKEN)
    outcome.assert_rejected("preprocess", "DataError", path, f"subject {BROKEN}",
                            "all 20 epochs were dropped", "peak-to-peak above 400 µV",
                            "expected at least one epoch within the rejection limits",
                            "Raise preprocessing.epochs.reject_uv")
    eeg.assert_nothing_after(outcome)


def test_class_with_fewer_trials_than_folds(eeg):
    raw = synthetic_raw(BROKEN)
    ann = raw.annotations.copy()
    ann.delete([i for i, d in enumerate(ann.description) if d == "right_hand"][2:])
    raw.set_annotations(ann)  # 2 right-hand trials, 3 folds
    write_recording(raw, eeg.root / f"sub-{BROKEN}" / EDF)
    outcome = eeg.run(BROKEN)
    line = outcome.assert_rejected(
        "decode-ts_lr", "DataError", "features/covariance.npz", f"subject {BROKEN}",
        "class 'right_hand' has 2 trial(s) in session '1', too few for 3-fold",
        "expected at least 3 trials of every class in every session",
        "Lower evaluation.n_folds (to at most 2)")
    assert "Traceback" not in line
    eeg.assert_nothing_after(outcome)
    # the stages before decoding finished, and said what they kept
    prep = read_json(eeg.subject_dir(BROKEN) / "preprocessing.json")
    assert prep["epochs"]["per_class"]["right_hand"] == {"events": 2, "kept": 2}
    assert len(mne.read_epochs(eeg.subject_dir(BROKEN) / "epochs-epo.fif",
                               verbose="error")) == 12
