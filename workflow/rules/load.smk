rule load_eeg:
    """Load one subject's recording (all sessions and runs) with the configured source."""
    output:
        raw=f"{RESULTS}/{{ds}}/sub-{{sub}}/raw.fif",
        recording=f"{RESULTS}/{{ds}}/sub-{{sub}}/recording.json",
    params:
        stage=stage_params("load"),
    log:
        f"{LOGS}/{{ds}}/sub-{{sub}}/load.log",
    threads: 1
    script:
        "../scripts/load_eeg.py"
