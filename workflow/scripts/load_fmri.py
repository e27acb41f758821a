"""Snakemake script: one subject's ROI time series from the configured fMRI source."""

from brainmill.config import validate_config
from brainmill.fmri_stages import run_load_fmri
from brainmill.joblog import end_job, job_logging

w = snakemake.wildcards
with job_logging(snakemake.log[0], f"load_fmri {w.ds} sub-{w.sub}"):
    cfg = validate_config(snakemake.config)
    run_load_fmri(cfg, w.ds, w.sub, snakemake.output[0])
end_job()  # skip the interpreter's teardown (about 1 s per job)
