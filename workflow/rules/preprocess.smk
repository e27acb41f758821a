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
    log:
        f"{LOGS}/{{ds}}/sub-{{sub}}/preprocess.log",
    threads: 1
    script:
        "../scripts/preprocess_eeg.py"
