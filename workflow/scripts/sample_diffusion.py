"""Snakemake script: generated vs real windows of one dataset's diffusion backbone."""

from brainmill.config import validate_config
from brainmill.diffusion_stages import run_sample_diffusion
from brainmill.joblog import end_job, job_logging

w, i, o, p = snakemake.wildcards, snakemake.input, snakemake.output, snakemake.params
with job_logging(snakemake.log[0], f"sample_diffusion {w.ds}"):
    cfg = validate_config(snakemake.config)
    run_sample_diffusion(cfg, w.ds, list(p.subjects), list(i.epochs), i.model, o.samples,
                         threads=snakemake.threads)
end_job()  # skip the interpreter's teardown (about 1 s per job)
