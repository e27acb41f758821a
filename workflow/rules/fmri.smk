# The fMRI branch: per subject load -> clean -> connectivity; per dataset the participants
# table, the demographic-conditioned VAE (latents, synthetic connectomes) and decoding.
# ds is constrained to the fMRI datasets, so these rules never compete with the EEG ones.


def fmri_files(name):
    """Every subject's ``name`` file of the dataset (an input function)."""

    def get(wildcards):
        return expand(f"{RESULTS}/{wildcards.ds}/sub-{{sub}}/{name}", sub=subjects(wildcards.ds))

    return get


def fmri_stage_params(section):
    def get(wildcards):
        ds_cfg = CFG.datasets[wildcards.ds]
        params = {"seed": CFG.seed, "source": ds_cfg.source.model_dump(mode="json")}
        if section in ("clean", "connectivity"):
            params["preprocessing"] = ds_cfg.preprocessing.model_dump(mode="json")
        if section == "connectivity":
            params["connectivity"] = ds_cfg.connectivity.model_dump(mode="json")
        if section == "participants":
            params["columns"] = ds_cfg.demographics
        if section == "vae":
            params["vae"] = ds_cfg.vae.model_dump(mode="json")
        if section == "decode":
            params["vae"] = ds_cfg.vae.model_dump(mode="json")
            params["decoding"] = (None if ds_cfg.decoding is None
                                  else ds_cfg.decoding.model_dump(mode="json"))
        return params

    return get


rule load_fmri:
    """ROI time series of one subject from the configured source."""
    wildcard_constraints:
        ds=FMRI_DS,
    output:
        f"{RESULTS}/{{ds}}/sub-{{sub}}/roi_timeseries.npz",
    params:
        stage=fmri_stage_params("load"),
    log:
        f"{LOGS}/{{ds}}/sub-{{sub}}/load_fmri.log",
    threads: 1
    script:
        "../scripts/load_fmri.py"


rule clean_fmri:
    """nilearn signal.clean and the motion exclusion of one subject."""
    wildcard_constraints:
        ds=FMRI_DS,
    input:
        rules.load_fmri.output,
    output:
        cleaned=f"{RESULTS}/{{ds}}/sub-{{sub}}/cleaned_timeseries.npz",
        qc=f"{RESULTS}/{{ds}}/sub-{{sub}}/qc.json",
    params:
        stage=fmri_stage_params("clean"),
    log:
        f"{LOGS}/{{ds}}/sub-{{sub}}/clean_fmri.log",
    threads: 1
    script:
        "../scripts/clean_fmri.py"


rule connectivity:
    """Connectivity matrix of one subject and its upper triangle."""
    wildcard_constraints:
        ds=FMRI_DS,
    input:
        cleaned=rules.clean_fmri.output.cleaned,
        qc=rules.clean_fmri.output.qc,
    output:
        f"{RESULTS}/{{ds}}/sub-{{sub}}/features/connectivity.npz",
    params:
        stage=fmri_stage_params("connectivity"),
    log:
        f"{LOGS}/{{ds}}/sub-{{sub}}/connectivity.log",
    threads: 1
    script:
        "../scripts/connectivity.py"


rule fmri_participants:
    """Demographics of every subject with its exclusion (participants.csv)."""
    wildcard_constraints:
        ds=FMRI_DS,
    input:
        qc=fmri_files("qc.json"),
    output:
        f"{RESULTS}/{{ds}}/fmri/participants.csv",
    params:
        stage=fmri_stage_params("participants"),
        subjects=lambda w: subjects(w.ds),
    log:
        f"{LOGS}/{{ds}}/fmri_participants.log",
    threads: 1
    script:
        "../scripts/fmri_participants.py"


rule train_vae:
    """The demographic-conditioned VAE on every included subject's connectivity."""
    wildcard_constraints:
        ds=FMRI_DS,
    input:
        connectivity=fmri_files("features/connectivity.npz"),
        participants=rules.fmri_participants.output,
    output:
        model=f"{RESULTS}/{{ds}}/models/vae/model.pt",
        summary=f"{RESULTS}/{{ds}}/models/vae/summary.json",
        history=f"{RESULTS}/{{ds}}/models/vae/history.csv",
    params:
        stage=fmri_stage_params("vae"),
        run_dir=lambda w: f"{RESULTS}/{w.ds}/models/vae/run",
    resources:
        gpu=1,
    log:
        f"{LOGS}/{{ds}}/train_vae.log",
    threads: TRAINER_THREADS  # see train_tokenizer
    script:
        "../scripts/train_vae.py"


rule vae_latents:
    """Confound-free latents of every subject and synthetic connectomes per profile."""
    wildcard_constraints:
        ds=FMRI_DS,
    input:
        model=rules.train_vae.output.model,
        connectivity=fmri_files("features/connectivity.npz"),
        participants=rules.fmri_participants.output,
    output:
        latents=f"{RESULTS}/{{ds}}/fmri/latents.npz",
        synthetic=f"{RESULTS}/{{ds}}/fmri/synthetic.npz",
    params:
        stage=fmri_stage_params("vae"),
    log:
        f"{LOGS}/{{ds}}/vae_latents.log",
    threads: 1
    script:
        "../scripts/vae_latents.py"


rule decode_fmri:
    """Decode the target from connectivity, latents and latents + demographics (CV folds)."""
    wildcard_constraints:
        ds=FMRI_DS,
    input:
        connectivity=fmri_files("features/connectivity.npz"),
        cleaned=fmri_files("cleaned_timeseries.npz"),
        participants=rules.fmri_participants.output,
    output:
        f"{RESULTS}/{{ds}}/fmri/decoding.json",
    params:
        stage=fmri_stage_params("decode"),
    resources:
        gpu=1,
    log:
        f"{LOGS}/{{ds}}/decode_fmri.log",
    threads: TRAINER_THREADS  # see train_tokenizer
    script:
        "../scripts/decode_fmri.py"


rule fmri_subject_report:
    """mne.Report of one fMRI subject: QC, carpet plot, connectivity and connectome."""
    wildcard_constraints:
        ds=FMRI_DS,
    input:
        timeseries=rules.load_fmri.output,
        cleaned=rules.clean_fmri.output.cleaned,
        qc=rules.clean_fmri.output.qc,
        connectivity=rules.connectivity.output,
    output:
        f"{REPORTS}/{{ds}}/sub-{{sub}}.html",
    log:
        f"{LOGS}/{{ds}}/sub-{{sub}}/report.log",
    threads: 1
    script:
        "../scripts/fmri_subject_report.py"


rule fmri_dataset_report:
    """Demographics, exclusions, VAE training and confound removal, synthetic vs real, decoding."""
    wildcard_constraints:
        ds=FMRI_DS,
    input:
        participants=rules.fmri_participants.output,
        summary=rules.train_vae.output.summary,
        history=rules.train_vae.output.history,
        synthetic=rules.vae_latents.output.synthetic,
        decoding=lambda w: ([] if CFG.datasets[w.ds].decoding is None
                            else [f"{RESULTS}/{w.ds}/fmri/decoding.json"]),
    output:
        f"{REPORTS}/{{ds}}/index.html",
    params:
        subjects=lambda w: subjects(w.ds),
    log:
        f"{LOGS}/{{ds}}/dataset_report.log",
    threads: 1
    script:
        "../scripts/fmri_dataset_report.py"
