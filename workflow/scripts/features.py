"""Snakemake script: compute one feature for one subject."""

from brainmill.config import validate_config
from brainmill.joblog import job_logging
from brainmill.stages import run_features

w = snakemake.wildcards
with job_logging(snakemake.log[0], f"features {w.feature} {w.ds} sub-{w.sub}"):
    cfg = validate_config(snakemake.config)
    run_features(cfg, w.ds, w.sub, w.feature, snakemake.input.epochs, snakemake.output[0])
