# The diffusion branch: a dataset-level state-space DDPM backbone (label-free), generated vs
# real windows for the report, per-subject representations from the frozen backbone, and the
# latent fusion decoder. The generic `features` and `decode` rules could also match these
# outputs; the ruleorder makes the dedicated rules win.


ruleorder: diffusion_features > features
ruleorder: decode_diffusion > decode


rule pretrain_diffusion:
    """Train the diffusion backbone on the configured subjects' epochs (no labels are read)."""
    input:
        epochs=diffusion_epochs,
    output:
        model=f"{RESULTS}/{{ds}}/models/diffusion/model.pt",
        info=f"{RESULTS}/{{ds}}/models/diffusion/training.json",
    params:
        stage=stage_params("diffusion"),
        subjects=lambda w: diffusion_subjects(w.ds),
        run_dir=lambda w: f"{RESULTS}/{w.ds}/models/diffusion/run",
    resources:
        gpu=1,
    priority: 15
    log:
        f"{LOGS}/{{ds}}/pretrain_diffusion.log",
    threads: TRAINER_THREADS  # see train_tokenizer
    script:
        "../scripts/pretrain_diffusion.py"


rule sample_diffusion:
    """Generated windows per channel next to real ones, their spectra and a two-sample test."""
    input:
        epochs=diffusion_epochs,
        model=rules.pretrain_diffusion.output.model,
    output:
        samples=f"{RESULTS}/{{ds}}/models/diffusion/samples.npz",
        summary=f"{RESULTS}/{{ds}}/models/diffusion/samples.json",
    params:
        stage=stage_params("diffusion_samples"),
        subjects=lambda w: diffusion_subjects(w.ds),
    resources:
        gpu=1,
    log:
        f"{LOGS}/{{ds}}/sample_diffusion.log",
    threads: 1
    script:
        "../scripts/sample_diffusion.py"


rule diffusion_features:
    """Std-pooled gate activations of one subject's epochs (frozen backbone)."""
    input:
        epochs=rules.preprocess_eeg.output.epochs,
        model=rules.pretrain_diffusion.output.model,
    output:
        f"{RESULTS}/{{ds}}/sub-{{sub}}/features/diffusion.npz",
    params:
        stage=stage_params("features", feature="diffusion"),
    resources:
        gpu=gpu_if_local,  # one backbone pass per window: the GPU when there is one
    priority: 15
    log:
        f"{LOGS}/{{ds}}/sub-{{sub}}/features-diffusion.log",
    threads: 1
    script:
        "../scripts/diffusion_features.py"


rule decode_diffusion:
    """Cross-validate the latent fusion Transformer on one subject (protocols from the config)."""
    input:
        features=f"{RESULTS}/{{ds}}/sub-{{sub}}/features/diffusion.npz",
        info=rules.pretrain_diffusion.output.info,
    output:
        metrics=f"{RESULTS}/{{ds}}/sub-{{sub}}/decoders/diffusion_lft/metrics.json",
        predictions=f"{RESULTS}/{{ds}}/sub-{{sub}}/decoders/diffusion_lft/predictions.csv",
    params:
        stage=stage_params("decode", decoder="diffusion_lft"),
    resources:
        gpu=1,
    priority: 15
    log:
        f"{LOGS}/{{ds}}/sub-{{sub}}/decode-diffusion_lft.log",
    # one torch thread: per-subject jobs run side by side (see decode_transformer)
    threads: 1
    script:
        "../scripts/decode_diffusion.py"
