"""The fMRI dataset config: modality tag, sources, checks and the JSON schema."""

import copy

import jsonschema
import pytest

from brainmill.config import (
    DatasetConfig,
    FMRIDatasetConfig,
    config_schema,
    validate_config,
)
from brainmill.errors import ConfigError

FMRI = {"modality": "fmri", "source": {"kind": "synthetic_fmri", "n_subjects": 8}}


def _config(**dataset) -> dict:
    return {"datasets": {"fm": {**copy.deepcopy(FMRI), **dataset}}}


def test_modality_selects_the_model_and_eeg_stays_the_default():
    cfg = validate_config({"datasets": {
        "fm": FMRI,
        "eeg": {"source": {"kind": "synthetic"}, "subjects": [1],
                "events": {"left_hand": "left_hand", "right_hand": "right_hand"}}}})
    assert isinstance(cfg.datasets["fm"], FMRIDatasetConfig)
    assert isinstance(cfg.datasets["eeg"], DatasetConfig)
    fm = cfg.datasets["fm"]
    assert fm.subjects == "all" and fm.connectivity.kind == "correlation"
    assert fm.demographics == ["age", "sex", "site", "diagnosis"]


def test_unknown_modality_and_typo_in_fmri_source_name_the_key():
    with pytest.raises(ConfigError, match=r"datasets\.fm: modality must be 'eeg'"):
        validate_config(_config(modality="meg"))
    with pytest.raises(ConfigError) as err:
        validate_config(_config(source={"kind": "synthetic_fmri", "n_roi": 3}))
    # neither the modality tag nor the source kind appears in the key path
    assert "datasets.fm.source.n_roi: unknown key 'n_roi'; did you mean 'n_rois'?" in str(err.value)


def test_target_cannot_be_a_vae_demographic():
    with pytest.raises(ConfigError, match="decoding.target 'sex' is a VAE demographic"):
        validate_config(_config(decoding={"target": "sex"}))
    with pytest.raises(ConfigError, match="vae.group 'site' is also a demographic"):
        validate_config(_config(vae={"group": "site"}))


def test_subjects_are_checked_against_the_synthetic_source():
    assert validate_config(_config(subjects=[1, 2])).datasets["fm"].subjects == ["1", "2"]
    with pytest.raises(ConfigError, match=r"subjects \['9'\] are not subjects"):
        validate_config(_config(subjects=[1, 9]))
    with pytest.raises(ConfigError, match="letters and digits only"):
        validate_config(_config(subjects=["sub_1"]))


def test_cleaning_and_training_values_are_validated():
    with pytest.raises(ConfigError, match="preprocessing.on_nan"):
        validate_config(_config(preprocessing={"on_nan": "drop"}))
    with pytest.raises(ConfigError, match="vae.training"):
        validate_config(_config(vae={"training": {"patience": 3}}))


def test_schema_accepts_fmri_and_rejects_what_pydantic_rejects():
    schema = config_schema()
    jsonschema.validate(_config(), schema)
    jsonschema.validate(_config(subjects="all"), schema)
    for bad in (_config(modality="meg"), _config(connectivity={"kind": "tangent"}),
                _config(extra_key=1)):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
        with pytest.raises(ConfigError):
            validate_config(bad)


def test_an_empty_subject_list_is_refused_with_a_clear_message():
    with pytest.raises(ConfigError, match=r"datasets\.fm\.subjects: subjects is an empty list; "
                                          r"list at least one subject label, or write 'all'"):
        validate_config(_config(subjects=[]))


def _files_source(kind: str, **fields) -> dict:
    source = {"kind": kind, "root": "/data", "participants": "participants.tsv", **fields}
    if kind == "roi_files":
        source.setdefault("tr", 2.0)
    else:
        source.setdefault("atlas", "atlas.nii.gz")
    return _config(source=source, subjects=["01", "02"])


@pytest.mark.parametrize("kind,key", [("roi_files", "pattern"), ("nifti", "pattern"),
                                      ("nifti", "confounds")])
def test_per_subject_patterns_need_the_subject_placeholder(kind, key):
    good = {"pattern": "sub-{subject}/bold.nii.gz"}
    validate_config(_files_source(kind, **{**good, key: "sub-{subject}/x.tsv"}))
    # without it every subject would silently read the same file
    with pytest.raises(ConfigError, match=rf"source\.{key}: pattern 'sub-01/x.tsv' must "
                                          r"contain '\{subject\}'; without it every subject"):
        validate_config(_files_source(kind, **{**good, key: "sub-01/x.tsv"}))
    # a typo used to be a bare KeyError when the path was built
    with pytest.raises(ConfigError, match=r"must contain '\{subject\}' \(it has \{sub\}\)"):
        validate_config(_files_source(kind, **{**good, key: "sub-{sub}/x.tsv"}))
    with pytest.raises(ConfigError, match=r"placeholder\(s\) \{run\}; only '\{subject\}'"):
        validate_config(_files_source(kind, **{**good, key: "sub-{subject}_{run}.tsv"}))
    with pytest.raises(ConfigError, match="not a valid pattern"):
        validate_config(_files_source(kind, **{**good, key: "sub-{subject/x.tsv"}))
