"""Snakemake script: the fMRI dataset's summary report."""

from brainmill.config import validate_config
from brainmill.joblog import end_job, job_logging
from brainmill.reports_fmri import build_fmri_dataset_report

w, i = snakemake.wildcards, snakemake.input
with job_logging(snakemake.log[0], f"dataset report {w.ds}"):
    cfg = validate_config(snakemake.config)
    ds_cfg = cfg.datasets[w.ds]
    build_fmri_dataset_report(
        w.ds, participants_csv=i.participants[0], vae_summary_json=i.summary,
        vae_history_csv=i.history, synthetic_npz=i.synthetic,
        decoding_json=i.decoding[0] if len(i.decoding) else None,
        out_html=snakemake.output[0], subjects=list(snakemake.params.subjects),
        config_json={"seed": cfg.seed, "dataset": ds_cfg.model_dump(mode="json")})
end_job()  # skip the interpreter's teardown (about 1 s per job)
