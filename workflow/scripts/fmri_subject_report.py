"""Snakemake script: one fMRI subject's mne.Report."""

from brainmill.joblog import end_job, job_logging
from brainmill.reports_fmri import build_fmri_subject_report

w, i = snakemake.wildcards, snakemake.input
with job_logging(snakemake.log[0], f"report {w.ds} sub-{w.sub}"):
    build_fmri_subject_report(
        w.ds, w.sub, timeseries_path=i.timeseries[0], cleaned_path=i.cleaned, qc_path=i.qc,
        connectivity_path=i.connectivity[0], out_html=snakemake.output[0])
end_job()  # skip the interpreter's teardown (about 1 s per job)
