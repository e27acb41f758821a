"""Snakemake script: one subject's connectivity matrix."""

from brainmill.config import validate_config
from brainmill.fmri_stages import run_connectivity
from brainmill.joblog import end_job, job_logging

w, i = snakemake.wildcards, snakemake.input
with job_logging(snakemake.log[0], f"connectivity {w.ds} sub-{w.sub}"):
    cfg = validate_config(snakemake.config)
    run_connectivity(cfg, w.ds, w.sub, i.cleaned, i.qc, snakemake.output[0])
end_job()  # skip the interpreter's teardown (about 1 s per job)
