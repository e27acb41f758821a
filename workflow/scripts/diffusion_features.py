"""Snakemake script: diffusion representations of one subject's epochs."""

from brainmill.config import validate_config
from brainmill.diffusion_stages import run_diffusion_features
from brainmill.joblog import end_job, job_logging

w, i = snakemake.wildcards, snakemake.input
with job_logging(snakemake.log[0], f"features diffusion {w.ds} sub-{w.sub}"):
    cfg = validate_config(snakemake.config)
    run_diffusion_features(cfg, w.ds, w.sub, i.epochs, i.model, snakemake.output[0],
                           threads=snakemake.threads)
end_job()  # skip the interpreter's teardown (about 1 s per job)
