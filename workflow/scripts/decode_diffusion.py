"""Snakemake script: cross-validate the latent fusion decoder for one subject."""

from brainmill.config import validate_config
from brainmill.diffusion_stages import run_decode_diffusion
from brainmill.joblog import end_job, job_logging

w, i, o = snakemake.wildcards, snakemake.input, snakemake.output
with job_logging(snakemake.log[0], f"decode diffusion_lft {w.ds} sub-{w.sub}"):
    cfg = validate_config(snakemake.config)
    run_decode_diffusion(cfg, w.ds, w.sub, i.features, i.info, o.metrics, o.predictions,
                         threads=snakemake.threads)
end_job()  # skip the interpreter's teardown (about 1 s per job)
