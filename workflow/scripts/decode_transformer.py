"""Snakemake script: cross-validate the token Transformer for one subject."""

from brainmill.config import validate_config
from brainmill.joblog import end_job, job_logging
from brainmill.token_stages import run_decode_transformer

w, i, o = snakemake.wildcards, snakemake.input, snakemake.output
with job_logging(snakemake.log[0], f"decode token_transformer {w.ds} sub-{w.sub}"):
    cfg = validate_config(snakemake.config)
    run_decode_transformer(cfg, w.ds, w.sub, i.features, i.model, o.metrics, o.predictions,
                           threads=snakemake.threads)
end_job()  # skip the interpreter's teardown (about 1 s per job)
