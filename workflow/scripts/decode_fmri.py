"""Snakemake script: cross-validated decoding from connectivity, latents, latents + demographics."""

from brainmill.config import validate_config
from brainmill.joblog import end_job, job_logging
from brainmill.vae_stages import run_decode_fmri

w, i = snakemake.wildcards, snakemake.input
with job_logging(snakemake.log[0], f"decode_fmri {w.ds}"):
    cfg = validate_config(snakemake.config)
    run_decode_fmri(cfg, w.ds, list(i.connectivity), list(i.cleaned), i.participants[0],
                    snakemake.output[0], threads=snakemake.threads)
end_job()  # skip the interpreter's teardown (about 1 s per job)
