"""Snakemake script: clean one subject's ROI time series (nilearn) and record its QC."""

from brainmill.config import validate_config
from brainmill.fmri_stages import run_clean_fmri
from brainmill.joblog import end_job, job_logging

w, o = snakemake.wildcards, snakemake.output
with job_logging(snakemake.log[0], f"clean_fmri {w.ds} sub-{w.sub}"):
    cfg = validate_config(snakemake.config)
    run_clean_fmri(cfg, w.ds, w.sub, snakemake.input[0], o.cleaned, o.qc)
end_job()  # skip the interpreter's teardown (about 1 s per job)
