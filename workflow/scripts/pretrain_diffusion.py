"""Snakemake script: train one dataset's diffusion backbone (resumes from its checkpoint)."""

from brainmill.config import validate_config
from brainmill.diffusion_stages import run_pretrain_diffusion
from brainmill.joblog import end_job, job_logging

w, o, p = snakemake.wildcards, snakemake.output, snakemake.params
with job_logging(snakemake.log[0], f"pretrain_diffusion {w.ds}"):
    cfg = validate_config(snakemake.config)
    run_pretrain_diffusion(cfg, w.ds, list(p.subjects), list(snakemake.input.epochs), o.model,
                           o.info, p.run_dir, threads=snakemake.threads)
end_job()  # skip the interpreter's teardown (about 1 s per job)
