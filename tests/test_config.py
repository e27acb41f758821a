"""The config models, their error messages and the generated JSON schema."""

import copy
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from brainmill.config import (
    Config,
    DatasetConfig,
    config_schema,
    load_config,
    validate_config,
)
from brainmill.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "config" / "config.yaml"


@pytest.fixture
def raw_default() -> dict:
    return yaml.safe_load(DEFAULT.read_text())


def test_every_shipped_config_is_valid():
    for path in sorted((ROOT / "config").glob("*.yaml")):
        cfg = load_config(path)
        assert cfg.datasets, path


def test_schema_file_is_in_sync_with_models():
    committed = json.loads((ROOT / "workflow" / "schemas" / "config.schema.json").read_text())
    assert committed == config_schema(), "run `brainmill schema` and commit the result"


def test_schema_declares_the_draft_snakemake_validates_with():
    # snakemake.utils.validate always uses Draft 2020-12 and warns on every run when the
    # schema declares another draft
    from jsonschema import Draft202012Validator

    schema = config_schema()
    assert schema["$schema"] == Draft202012Validator.META_SCHEMA["$schema"]
    Draft202012Validator.check_schema(schema)


def test_schema_accepts_default_and_rejects_unknown_key(raw_default):
    schema = config_schema()
    jsonschema.validate(raw_default, schema)
    bad = copy.deepcopy(raw_default)
    bad["datasets"]["synthetic"]["preprocessing"]["tmn"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_typo_names_key_path_and_closest_name(raw_default):
    raw_default["datasets"]["synthetic"]["preprocessing"]["epochs"]["tmn"] = 0.0
    with pytest.raises(ConfigError) as info:
        validate_config(raw_default, "my.yaml")
    msg = str(info.value)
    assert "my.yaml" in msg
    assert "datasets.synthetic.preprocessing.epochs.tmn" in msg
    assert "did you mean 'tmin'" in msg


def test_typo_in_discriminated_source_hides_the_tag(raw_default):
    raw_default["datasets"]["synthetic"]["source"]["n_sesions"] = 3
    msg = str(pytest.raises(ConfigError, validate_config, raw_default).value)
    assert "datasets.synthetic.source.n_sesions" in msg
    assert "did you mean 'n_sessions'" in msg


def test_typo_in_decoder_name(raw_default):
    raw_default["datasets"]["synthetic"]["decoders"]["ts_lrr"] = {}
    msg = str(pytest.raises(ConfigError, validate_config, raw_default).value)
    assert "did you mean 'ts_lr'" in msg


def test_wrong_type_names_key(raw_default):
    raw_default["datasets"]["synthetic"]["evaluation"]["n_folds"] = "five"
    msg = str(pytest.raises(ConfigError, validate_config, raw_default).value)
    assert "datasets.synthetic.evaluation.n_folds" in msg
    assert "integer" in msg


def test_cross_session_on_single_session_source_is_rejected(raw_default):
    raw_default["datasets"]["synthetic"]["source"]["n_sessions"] = 1
    msg = str(pytest.raises(ConfigError, validate_config, raw_default).value)
    assert "cross_session" in msg and "single session" in msg


def test_a_decoders_own_cross_session_on_a_single_session_source_is_rejected(raw_default):
    ds = raw_default["datasets"]["synthetic"]
    ds["source"]["n_sessions"] = 1
    ds["evaluation"]["protocols"] = ["within_session"]  # the dataset's own list is fine
    assert "cross_session" in ds["decoders"]["token_transformer"]["protocols"]
    msg = str(pytest.raises(ConfigError, validate_config, raw_default).value)
    assert "decoders.token_transformer.protocols asks for 'cross_session'" in msg
    for name in ("token_transformer", "diffusion_lft"):
        ds["decoders"][name]["protocols"] = ["within_session"]
    validate_config(raw_default)


def test_band_and_window_must_be_ordered(raw_default):
    bad = copy.deepcopy(raw_default)
    bad["datasets"]["synthetic"]["preprocessing"]["l_freq"] = 40
    assert "l_freq" in str(pytest.raises(ConfigError, validate_config, bad).value)
    bad = copy.deepcopy(raw_default)
    bad["datasets"]["synthetic"]["preprocessing"]["epochs"]["tmax"] = 0.1
    assert "tmax" in str(pytest.raises(ConfigError, validate_config, bad).value)
    bad = copy.deepcopy(raw_default)
    bad["datasets"]["synthetic"]["preprocessing"]["resample"] = 50
    assert "Nyquist" in str(pytest.raises(ConfigError, validate_config, bad).value)


def test_subject_labels_are_coerced_and_checked(raw_default):
    cfg = validate_config(raw_default)
    assert cfg.datasets["synthetic"].subjects == ["1", "2", "3", "4", "5"]
    raw_default["datasets"]["synthetic"]["subjects"] = ["a/b"]
    assert "letters and digits" in str(pytest.raises(ConfigError, validate_config,
                                                      raw_default).value)


def test_disabling_a_decoder_and_events_as_strings(raw_default):
    ds = raw_default["datasets"]["synthetic"]
    ds["decoders"]["csp_lda"] = None
    ds["events"] = {"left_hand": "left_hand", "right_hand": "right_hand"}
    cfg = validate_config(raw_default)
    assert list(cfg.datasets["synthetic"].decoders.enabled()) == [
        "ts_lr", "acm_ts_svm", "acm_mdm", "token_transformer", "diffusion_lft"]
    assert cfg.datasets["synthetic"].events == {"left_hand": ["left_hand"],
                                                "right_hand": ["right_hand"]}


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("datasets: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_defaults_are_complete():
    ds = DatasetConfig.model_validate({
        "source": {"kind": "eegbci"}, "subjects": [1],
        "events": {"left_hand": "T1", "right_hand": "T2"},
        "evaluation": {"protocols": ["within_session"]},
    })
    cfg = Config(datasets={"p": ds})
    assert cfg.seed == 42
    assert ds.source.runs == [4, 8, 12]
    assert ds.preprocessing.epochs.reject_uv == 150.0


def test_norm_and_act_names_match_the_layer_core_registry():
    # config.py must not import torch, so it lists the names itself; keep them in step
    from typing import get_args

    from brainmill.config import ActName, NormName
    from brainmill.nn.registry import ACTS, NORMS

    assert set(get_args(NormName)) == set(NORMS)
    assert set(get_args(ActName)) == set(ACTS)


def test_training_config_rejects_a_rising_schedule_and_patience_without_validation():
    from brainmill.config import TrainingConfig

    with pytest.raises(ValueError, match="min_lr"):
        TrainingConfig(lr=1e-3, min_lr=5e-3)
    with pytest.raises(ValueError, match="val_fraction"):
        TrainingConfig(patience=3)
    from brainmill.training import TrainConfig

    # every field maps onto the trainer's own config
    TrainConfig(**TrainingConfig(val_fraction=0.2, patience=3).trainer_fields(), seed=1)


def test_diffusion_decoder_needs_a_backbone_and_known_subjects(raw_default):
    ds = raw_default["datasets"]["synthetic"]
    backbone = ds.pop("diffusion")
    with pytest.raises(ConfigError, match="diffusion_lft needs a 'diffusion' section"):
        validate_config(raw_default)
    ds["diffusion"] = {**backbone, "subjects": [1, 9]}
    with pytest.raises(ConfigError, match=r"diffusion.subjects \['9'\]"):
        validate_config(raw_default)
    ds["diffusion"] = {**backbone, "subjects": [2], "sampling_steps": 60}
    with pytest.raises(ConfigError, match="sampling_steps"):
        validate_config(raw_default)
    ds["diffusion"] = {**backbone, "subjects": [2]}
    assert validate_config(raw_default).datasets["synthetic"].diffusion_subjects == ["2"]


def test_events_need_an_annotation_each_and_one_class_per_annotation(raw_default):
    ds = raw_default["datasets"]["synthetic"]
    ds["events"] = {"left_hand": [], "right_hand": ["right_hand"]}
    msg = str(pytest.raises(ConfigError, validate_config, raw_default).value)
    assert "datasets.synthetic.events: class 'left_hand' has no annotation" in msg
    ds["events"] = {"left_hand": ["left_hand"], "right_hand": ["left_hand", "right_hand"]}
    msg = str(pytest.raises(ConfigError, validate_config, raw_default).value)
    assert ("annotation 'left_hand' is mapped to both classes 'left_hand' and 'right_hand'"
            in msg)
    # the JSON schema rejects the empty list too
    ds["events"] = {"left_hand": [], "right_hand": ["right_hand"]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(raw_default, config_schema())


@pytest.mark.parametrize("key", ["results_dir", "reports_dir", "logs_dir"])
@pytest.mark.parametrize("value", ["", "  "])
def test_output_folders_must_be_named(raw_default, key, value):
    raw_default[key] = value
    msg = str(pytest.raises(ConfigError, validate_config, raw_default).value)
    assert f"{key}: {key} is empty; name a folder" in msg
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(raw_default, config_schema())


def _bonn(**dataset) -> dict:
    return {"datasets": {"bonn": {
        "source": {"kind": "bonn", "window_s": 5.0, "step_s": 2.5}, "subjects": ["all"],
        "events": {"Z": "Z", "S": "S"},
        "decoders": {"ts_lr": None, "csp_lda": None, "bandpower_lr": {}},
        "evaluation": {"protocols": ["grouped_kfold"]}, **dataset}}}


def test_within_session_is_refused_on_overlapping_bonn_windows():
    validate_config(_bonn())
    msg = str(pytest.raises(ConfigError, validate_config,
                            _bonn(evaluation={"protocols": ["within_session"]})).value)
    assert "datasets.bonn: evaluation.protocols asks for 'within_session'" in msg
    assert "step_s 2.5 < window_s 5.0" in msg and "use 'grouped_kfold'" in msg
    # a decoder's own protocols are checked too
    own = _bonn(decoders={"ts_lr": None, "csp_lda": None, "bandpower_lr": {},
                          "token_transformer": {"protocols": ["within_session"]}},
                tokenizer={})
    msg = str(pytest.raises(ConfigError, validate_config, own).value)
    assert "decoders.token_transformer.protocols asks for 'within_session'" in msg
    # windows that do not overlap may be split freely
    apart = _bonn(evaluation={"protocols": ["within_session"]})
    apart["datasets"]["bonn"]["source"]["step_s"] = 5.0
    validate_config(apart)
