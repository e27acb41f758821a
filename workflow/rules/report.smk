rule subject_report:
    """mne.Report of one subject: QC, preprocessing, epochs, decoders, config and versions."""
    wildcard_constraints:
        ds=EEG_DS,
    input:
        recording=rules.load_eeg.output.recording,
        epochs=rules.preprocess_eeg.output.epochs,
        preprocessing=rules.preprocess_eeg.output.log,
        qc=rules.preprocess_eeg.output.qc,
        metrics=subject_metrics,
        tokens=subject_tokens,
    output:
        f"{REPORTS}/{{ds}}/sub-{{sub}}.html",
    log:
        f"{LOGS}/{{ds}}/sub-{{sub}}/report.log",
    threads: 1
    script:
        "../scripts/subject_report.py"


rule dataset_report:
    """Every decoder × subject with chance level, mean ± sd; a CSV of all scores."""
    wildcard_constraints:
        ds=EEG_DS,
    input:
        metrics=dataset_metrics,
        tokenizer=dataset_tokenizer_info,
        diffusion=dataset_diffusion_info,
    output:
        html=f"{REPORTS}/{{ds}}/index.html",
        scores=f"{RESULTS}/{{ds}}/scores.csv",
    log:
        f"{LOGS}/{{ds}}/dataset_report.log",
    threads: 1
    script:
        "../scripts/dataset_report.py"
