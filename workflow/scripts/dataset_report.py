"""Snakemake script: build the dataset's summary report and score table."""

from brainmill.config import validate_config
from brainmill.joblog import end_job, job_logging
from brainmill.reports import build_dataset_report

w, o = snakemake.wildcards, snakemake.output
with job_logging(snakemake.log[0], f"dataset report {w.ds}"):
    cfg = validate_config(snakemake.config)
    tokenizer = list(snakemake.input.tokenizer)
    diffusion = list(snakemake.input.diffusion)
    build_dataset_report(cfg, w.ds, list(snakemake.input.metrics), o.html, o.scores,
                         tokenizer_info=tokenizer[0] if tokenizer else None,
                         diffusion_info=diffusion[0] if diffusion else None,
                         diffusion_samples=diffusion[1] if diffusion else None)
end_job()  # skip the interpreter's teardown (about 1 s per job)
