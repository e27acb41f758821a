"""Snakemake script: train one dataset's TFM tokenizer (resumes from its checkpoint)."""

from brainmill.config import validate_config
from brainmill.joblog import end_job, job_logging
from brainmill.token_stages import run_train_tokenizer

w, o, p = snakemake.wildcards, snakemake.output, snakemake.params
with job_logging(snakemake.log[0], f"train_tokenizer {w.ds}"):
    cfg = validate_config(snakemake.config)
    run_train_tokenizer(cfg, w.ds, list(p.subjects), list(snakemake.input.epochs), o.model,
                        o.info, p.run_dir, threads=snakemake.threads)
end_job()  # skip the interpreter's teardown (about 1 s per job)
