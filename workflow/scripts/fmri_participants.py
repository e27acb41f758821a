"""Snakemake script: the dataset's participants table with every subject's exclusion."""

from brainmill.config import validate_config
from brainmill.fmri_stages import run_fmri_participants
from brainmill.joblog import end_job, job_logging

w = snakemake.wildcards
with job_logging(snakemake.log[0], f"fmri_participants {w.ds}"):
    cfg = validate_config(snakemake.config)
    run_fmri_participants(cfg, w.ds, list(snakemake.params.subjects),
                          list(snakemake.input.qc), snakemake.output[0])
end_job()  # skip the interpreter's teardown (about 1 s per job)
