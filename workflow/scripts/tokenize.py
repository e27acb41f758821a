"""Snakemake script: tokenize one subject's epochs with the dataset's tokenizer."""

from brainmill.config import validate_config
from brainmill.joblog import end_job, job_logging
from brainmill.token_stages import run_tokenize

w, i = snakemake.wildcards, snakemake.input
with job_logging(snakemake.log[0], f"tokenize {w.ds} sub-{w.sub}"):
    cfg = validate_config(snakemake.config)
    run_tokenize(cfg, w.ds, w.sub, i.epochs, i.model, snakemake.output[0],
                 threads=snakemake.threads)
end_job()  # skip the interpreter's teardown (about 1 s per job)
