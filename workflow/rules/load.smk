rule load_eeg:
    """Load one subject's recording (all sessions and runs) with the configured source."""
    output:
        raw=f"{RESULTS}/{{ds}}/sub-{{sub}}/raw.fif",
        recording=f"{RESULTS}/{{ds}}/sub-{{sub}}/recording.json",
    params:
        stage=stage_params("load"),
    # the dataset-level tokenizer and diffusion trainers wait for every subject's epochs: the
    # longest chains of the DAG start here (rule priorities are not passed on to inputs)
    priority: 25
    log:
        f"{LOGS}/{{ds}}/sub-{{sub}}/load.log",
    threads: 1
    script:
        "../scripts/load_eeg.py"
