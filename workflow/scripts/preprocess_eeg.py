"""Snakemake script: preprocess one subject's EEG into epochs."""

from brainmill.config import validate_config
from brainmill.joblog import end_job, job_logging
from brainmill.stages import run_preprocess

w, i, o = snakemake.wildcards, snakemake.input, snakemake.output
with job_logging(snakemake.log[0], f"preprocess {w.ds} sub-{w.sub}"):
    cfg = validate_config(snakemake.config)
    run_preprocess(cfg, w.ds, w.sub, i.raw, i.recording, o.epochs, o.log, o.qc)
end_job()  # skip the interpreter's teardown (about 1 s per job)
