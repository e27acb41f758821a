"""Snakemake script: the dataset's participants table with every subject's exclusion."""

from brainmill.config import validate_config
from brainmill.fmri_stages import run_fmri_participants
from brainmill.joblog import job_logging

w = snakemake.wildcards
with job_logging(snakemake.log[0], f"fmri_participants {w.ds}"):
    cfg = validate_config(snakemake.config)
    run_fmri_participants(cfg, w.ds, list(snakemake.params.subjects),
                          list(snakemake.input.qc), snakemake.output[0])
