rule features:
    """Per-epoch features (e.g. covariance matrices) of one subject."""
    wildcard_constraints:
        ds=EEG_DS,
    input:
        epochs=rules.preprocess_eeg.output.epochs,
    output:
        f"{RESULTS}/{{ds}}/sub-{{sub}}/features/{{feature}}.npz",
    params:
        stage=stage_params("features"),
    log:
        f"{LOGS}/{{ds}}/sub-{{sub}}/features-{{feature}}.log",
    threads: 1
    script:
        "../scripts/features.py"
