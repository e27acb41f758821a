"""Fixtures of the reliability catalogue: the EEG and fMRI benches (``reliability_bench``).

Subjects 1 and 3 of each bench are run once per session; the per-test fixtures empty subject 2
before a case and check afterwards that subjects 1 and 3 kept every output unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from reliability_bench import (
    BROKEN,
    GOOD,
    ROI_NAMES,
    EEGBench,
    FMRIBench,
    assert_intact,
    fingerprint,
    roi_table,
    run_snakemake,
    synthetic_raw,
    write_recording,
    write_roi_file,
)

from brainmill.io import FeatureSet, read_json


@pytest.fixture(scope="session")
def eeg_bench(tmp_path_factory) -> tuple[EEGBench, dict[Path, str]]:
    """Subjects 1 and 3 recorded as EDF and run through every stage once."""
    bench = EEGBench(tmp_path_factory.mktemp("eeg_bench"))
    for sub in GOOD:
        bench.fresh(sub)
        write_recording(synthetic_raw(sub), bench.root / f"sub-{sub}" / f"sub-{sub}_eeg.edf")
        bench.run(sub).assert_finished()
    outputs = [p for sub in GOOD for p in bench.outputs(sub)]
    for sub in GOOD:  # they load
        base = bench.subject_dir(sub)
        assert read_json(base / "decoders/ts_lr/metrics.json")["subject"] == sub
        assert len(FeatureSet.load(base / "features/covariance.npz").y) > 0
    return bench, fingerprint(outputs)


@pytest.fixture
def eeg(eeg_bench):
    """The bench with an empty subject 2; after the test, subjects 1 and 3 are checked."""
    bench, before = eeg_bench
    bench.fresh(BROKEN)
    yield bench
    assert_intact(before)

@pytest.fixture(scope="session")
def fmri_bench(tmp_path_factory) -> tuple[FMRIBench, dict[Path, str]]:
    """Subjects 1 and 3 run through load_fmri -> clean_fmri -> connectivity once."""
    bench = FMRIBench(tmp_path_factory.mktemp("fmri_bench"))
    for sub in GOOD:
        write_roi_file(bench.root / f"sub-{sub}.tsv", roi_table(seed=int(sub)), ROI_NAMES)
        bench.run(sub).assert_finished()
    for sub in GOOD:
        assert json.loads((bench.subject_dir(sub) / "qc.json").read_text())["excluded"] is False
    return bench, fingerprint([p for sub in GOOD for p in bench.outputs(sub)])


@pytest.fixture
def fmri(fmri_bench):
    """The bench with no subject 2 file; after the test, subjects 1 and 3 are checked."""
    bench, before = fmri_bench
    bench.fresh(BROKEN)
    yield bench
    assert_intact(before)


@pytest.fixture(scope="session")
def snakemake_run():
    """:func:`tests.workflow.conftest.run_snakemake`, as a fixture."""
    return run_snakemake
