"""Snakemake script: train the dataset's DemoVAE (resumes from its checkpoint)."""

from brainmill.config import validate_config
from brainmill.joblog import end_job, job_logging
from brainmill.vae_stages import run_train_vae

w, i, o = snakemake.wildcards, snakemake.input, snakemake.output
with job_logging(snakemake.log[0], f"train_vae {w.ds}"):
    cfg = validate_config(snakemake.config)
    run_train_vae(cfg, w.ds, list(i.connectivity), i.participants[0], o.model, o.summary,
                  o.history, snakemake.params.run_dir, threads=snakemake.threads)
end_job()  # skip the interpreter's teardown (about 1 s per job)
