"""Snakemake script: latents of every subject and synthetic connectomes per profile."""

from brainmill.config import validate_config
from brainmill.joblog import end_job, job_logging
from brainmill.vae_stages import run_vae_outputs

w, i, o = snakemake.wildcards, snakemake.input, snakemake.output
with job_logging(snakemake.log[0], f"vae_latents {w.ds}"):
    cfg = validate_config(snakemake.config)
    run_vae_outputs(cfg, w.ds, i.model, list(i.connectivity), i.participants[0], o.latents,
                    o.synthetic, threads=snakemake.threads)
end_job()  # skip the interpreter's teardown (about 1 s per job)
