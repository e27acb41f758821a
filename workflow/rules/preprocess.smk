rule preprocess_eeg:
    """Picks, bad channels, reference, filters, resampling and epoching with MNE."""
    input:
        raw=rules.load_eeg.output.raw,
        recording=rules.load_eeg.output.recording,
    output:
        epochs=f"{RESULTS}/{{ds}}/sub-{{sub}}/epochs-epo.fif",
        log=f"{RESULTS}/{{ds}}/sub-{{sub}}/preprocessing.json",
        qc=f"{RESULTS}/{{ds}}/sub-{{sub}}/qc.npz",
    params:
        stage=stage_params("preprocessing"),
    # the dataset-level tokenizer and diffusion trainers wait for every subject's epochs: the
    # longest chains of the DAG start here (rule priorities are not passed on to inputs)
    priority: 25
    log:
        f"{LOGS}/{{ds}}/sub-{{sub}}/preprocess.log",
    threads: 1
    script:
        "../scripts/preprocess_eeg.py"
