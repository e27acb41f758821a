"""Snakemake script: build one subject's mne.Report."""

from brainmill.config import validate_config
from brainmill.joblog import end_job, job_logging, limit_kernel_threads
from brainmill.reports import build_subject_report

limit_kernel_threads(snakemake.threads)  # the ACM kernels (tangent-vector view): this job's cores

w, i = snakemake.wildcards, snakemake.input
with job_logging(snakemake.log[0], f"report {w.ds} sub-{w.sub}"):
    cfg = validate_config(snakemake.config)
    build_subject_report(
        cfg, w.ds, w.sub,
        recording_json=i.recording, epochs_path=i.epochs, preprocessing_json=i.preprocessing,
        qc_path=i.qc, metrics_paths=list(i.metrics), out_html=snakemake.output[0],
        tokens_path=i.tokens[0] if len(i.tokens) else None,
    )
end_job()  # skip the interpreter's teardown (about 1 s per job)
