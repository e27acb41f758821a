rule decode:
    """Cross-validate one classical decoder on one subject (protocols from the config)."""
    input:
        features=decoder_feature,
    output:
        metrics=f"{RESULTS}/{{ds}}/sub-{{sub}}/decoders/{{decoder}}/metrics.json",
        predictions=f"{RESULTS}/{{ds}}/sub-{{sub}}/decoders/{{decoder}}/predictions.csv",
    params:
        stage=stage_params("decode"),
    log:
        f"{LOGS}/{{ds}}/sub-{{sub}}/decode-{{decoder}}.log",
    threads: 1
    script:
        "../scripts/decode.py"
