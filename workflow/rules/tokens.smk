# The token branch: a dataset-level tokenizer (label-free), per-subject tokens, and the token
# Transformer decoder. The generic `features` and `decode` rules could also match these
# outputs; the ruleorder makes the dedicated rules win.


ruleorder: tokenize > features
ruleorder: decode_transformer > decode


rule train_tokenizer:
    """Train the TFM tokenizer on the configured subjects' epochs (no labels are read)."""
    input:
        epochs=tokenizer_epochs,
    output:
        model=f"{RESULTS}/{{ds}}/models/tokenizer/model.pt",
        info=f"{RESULTS}/{{ds}}/models/tokenizer/training.json",
    params:
        stage=stage_params("tokenizer"),
        subjects=lambda w: tokenizer_subjects(w.ds),
        run_dir=lambda w: f"{RESULTS}/{w.ds}/models/tokenizer/run",
    resources:
        gpu=1,
    # the token chain (tokenizer -> tokens -> decoder) is the longest path of the DAG: start it
    # as soon as the epochs exist, alongside the classical decoders
    priority: 20
    log:
        f"{LOGS}/{{ds}}/train_tokenizer.log",
    # every tokenize job waits for this one; TRAINER_THREADS (common.smk) keeps it from
    # waiting for all cores to be free at once on a small machine
    threads: TRAINER_THREADS
    script:
        "../scripts/train_tokenizer.py"


rule tokenize:
    """Token ids per channel and frame of one subject's epochs."""
    input:
        epochs=rules.preprocess_eeg.output.epochs,
        model=rules.train_tokenizer.output.model,
    output:
        f"{RESULTS}/{{ds}}/sub-{{sub}}/features/tokens.npz",
    params:
        stage=stage_params("features", feature="tokens"),
    resources:
        # the tokenizer runs on the GPU when there is one: one such job at a time, like the
        # trainers (each holds a CUDA context and ~1 GB of code-search scores)
        gpu=gpu_if_local,
    priority: 20
    log:
        f"{LOGS}/{{ds}}/sub-{{sub}}/features-tokens.log",
    threads: 1
    script:
        "../scripts/tokenize.py"


rule decode_transformer:
    """Cross-validate the token Transformer on one subject (protocols from the config)."""
    input:
        features=f"{RESULTS}/{{ds}}/sub-{{sub}}/features/tokens.npz",
        model=rules.train_tokenizer.output.model,
    output:
        metrics=f"{RESULTS}/{{ds}}/sub-{{sub}}/decoders/token_transformer/metrics.json",
        predictions=f"{RESULTS}/{{ds}}/sub-{{sub}}/decoders/token_transformer/predictions.csv",
    params:
        stage=stage_params("decode", decoder="token_transformer"),
    resources:
        gpu=1,
    priority: 20
    log:
        f"{LOGS}/{{ds}}/sub-{{sub}}/decode-token_transformer.log",
    # one torch thread: per-subject jobs run side by side, and torch threads that compete
    # with other jobs' threads for the same cores spin instead of computing
    threads: 1
    script:
        "../scripts/decode_transformer.py"
