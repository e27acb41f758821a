"""Snakemake script: cross-validate one decoder for one subject."""

from brainmill.config import validate_config
from brainmill.joblog import job_logging
from brainmill.stages import run_decode

w, o = snakemake.wildcards, snakemake.output
with job_logging(snakemake.log[0], f"decode {w.decoder} {w.ds} sub-{w.sub}"):
    cfg = validate_config(snakemake.config)
    run_decode(cfg, w.ds, w.sub, w.decoder, snakemake.input.features, o.metrics, o.predictions)
