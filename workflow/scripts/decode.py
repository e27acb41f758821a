"""Snakemake script: cross-validate one decoder for one subject."""

from brainmill.config import validate_config
from brainmill.fast_imports import hide_torch_from_pyriemann
from brainmill.joblog import end_job, job_logging, limit_kernel_threads
from brainmill.stages import run_decode

hide_torch_from_pyriemann()  # a classical job: pyriemann's torch backend is never used
limit_kernel_threads(snakemake.threads)  # the ACM kernels: this job's cores only

w, o = snakemake.wildcards, snakemake.output
with job_logging(snakemake.log[0], f"decode {w.decoder} {w.ds} sub-{w.sub}"):
    cfg = validate_config(snakemake.config)
    run_decode(cfg, w.ds, w.sub, w.decoder, snakemake.input.features, o.metrics, o.predictions)
end_job()  # skip the interpreter's teardown (about 1 s per job)
