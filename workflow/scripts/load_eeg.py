"""Snakemake script: load one subject's EEG."""

from brainmill.config import validate_config
from brainmill.joblog import end_job, job_logging
from brainmill.stages import run_load

w = snakemake.wildcards
with job_logging(snakemake.log[0], f"load {w.ds} sub-{w.sub}"):
    cfg = validate_config(snakemake.config)
    run_load(cfg, w.ds, w.sub, snakemake.output.raw, snakemake.output.recording)
end_job()  # skip the interpreter's teardown (about 1 s per job)
