# Helpers shared by the rules: target lists and per-stage parameters (rerun triggers).


from pathlib import Path

from snakemake.exceptions import WorkflowError

from brainmill.config import FMRIDatasetConfig


def is_fmri(ds):
    return isinstance(CFG.datasets[ds], FMRIDatasetConfig)


def _names_regex(names):
    # a regex that matches exactly these dataset names (and nothing when there are none)
    return "|".join(names) if names else "(?!x)x"


# Threads of the dataset-level torch jobs (trainers, fMRI decoding). A job that asks for every
# core waits until all of them are free at once, which on a small machine only happens when
# the per-subject jobs run out: on 2 cores such a job started 4 minutes late. Half the cores
# (at most 4) lets it start while per-subject jobs still run.
def _trainer_threads():
    try:
        cores = workflow.cores
    except WorkflowError:  # a dry run without --cores: any value will do
        return 1
    return min(4, max(1, cores // 2))


TRAINER_THREADS = _trainer_threads()


# Whether this machine has an NVIDIA GPU (its driver's device node; importing torch here would
# slow every job's start). Per-subject jobs that run on the GPU when there is one (tokenize,
# diffusion_features) then claim the `gpu` resource like the trainers (`gpu_if_local`);
# without one they run side by side.
GPU_PRESENT = Path("/dev/nvidiactl").exists()


def gpu_if_local(wildcards):
    """The `gpu` claim of a job that uses a GPU only when one is there: 1 when jobs run on
    this machine and it has one, else 0.

    A callable, so that it is asked once the executor is known (the Snakefile is parsed
    before): under a cluster executor the DAG is built on a login node, whose GPU says
    nothing about the nodes that run the jobs, and a claim would make every such job ask
    Slurm for a GPU in its CPU partition.
    """
    return 1 if GPU_PRESENT and workflow.local_exec else 0


EEG_DS = _names_regex([ds for ds in CFG.datasets if not is_fmri(ds)])
FMRI_DS = _names_regex([ds for ds in CFG.datasets if is_fmri(ds)])


_FMRI_SUBJECTS = {}


def subjects(ds):
    if not is_fmri(ds):
        return CFG.datasets[ds].subjects
    if ds not in _FMRI_SUBJECTS:  # 'all' reads the source's participants table once
        from brainmill.datasets.fmri_sources import dataset_subjects

        _FMRI_SUBJECTS[ds] = dataset_subjects(CFG.datasets[ds], CFG.seed)
    return _FMRI_SUBJECTS[ds]


def enabled_decoders(ds):
    return list(CFG.datasets[ds].decoders.enabled())


def all_targets():
    targets = []
    for ds in CFG.datasets:
        targets.append(f"{REPORTS}/{ds}/index.html")
        targets += expand(f"{REPORTS}/{ds}/sub-{{sub}}.html", sub=subjects(ds))
    return targets


def stage_params(section, feature=None, decoder=None):
    """The config section a stage depends on, so Snakemake reruns it when that changes.

    ``feature``/``decoder`` fix the name for rules without that wildcard (tokenize,
    decode_transformer).
    """

    def get(wildcards):
        ds_cfg = CFG.datasets[wildcards.ds]
        name_decoder = decoder or getattr(wildcards, "decoder", None)
        name_feature = feature or getattr(wildcards, "feature", None)
        if section == "diffusion":
            return {"seed": CFG.seed, "diffusion": ds_cfg.diffusion.backbone_fields(),
                    "subjects": diffusion_subjects(wildcards.ds)}
        if section == "diffusion_samples":
            return {"seed": CFG.seed, "samples": ds_cfg.diffusion.sampling_fields()}
        if section == "tokenizer":
            return {"seed": CFG.seed, "tokenizer": ds_cfg.tokenizer.model_dump(mode="json"),
                    "subjects": tokenizer_subjects(wildcards.ds)}
        if section == "load":
            return {"seed": CFG.seed, "source": ds_cfg.source.model_dump(mode="json"),
                    "events": ds_cfg.events}
        if section == "decode":
            return {"seed": CFG.seed,
                    "decoder": ds_cfg.decoders.enabled()[name_decoder].model_dump(mode="json"),
                    "evaluation": ds_cfg.evaluation.model_dump(mode="json")}
        if section == "features":
            return getattr(ds_cfg.features, name_feature).model_dump(mode="json")
        return getattr(ds_cfg, section).model_dump(mode="json")

    return get


def decoder_feature(wildcards):
    feature = CFG.datasets[wildcards.ds].decoders.enabled()[wildcards.decoder].feature
    return f"{RESULTS}/{wildcards.ds}/sub-{wildcards.sub}/features/{feature}.npz"


def subject_metrics(wildcards):
    return expand(
        f"{RESULTS}/{wildcards.ds}/sub-{wildcards.sub}/decoders/{{decoder}}/metrics.json",
        decoder=enabled_decoders(wildcards.ds),
    )


def dataset_metrics(wildcards):
    return expand(
        f"{RESULTS}/{wildcards.ds}/sub-{{sub}}/decoders/{{decoder}}/metrics.json",
        sub=subjects(wildcards.ds),
        decoder=enabled_decoders(wildcards.ds),
    )


def tokenizer_subjects(ds):
    """Subjects whose epochs train the dataset's tokenizer (default: all of them)."""
    return CFG.datasets[ds].tokenizer_subjects


def tokenizer_epochs(wildcards):
    return expand(f"{RESULTS}/{wildcards.ds}/sub-{{sub}}/epochs-epo.fif",
                  sub=tokenizer_subjects(wildcards.ds))


def subject_tokens(wildcards):
    """The subject's tokens file when the dataset has a tokenizer (for the report)."""
    if CFG.datasets[wildcards.ds].tokenizer is None:
        return []
    return [f"{RESULTS}/{wildcards.ds}/sub-{wildcards.sub}/features/tokens.npz"]


def dataset_tokenizer_info(wildcards):
    if CFG.datasets[wildcards.ds].tokenizer is None:
        return []
    return [f"{RESULTS}/{wildcards.ds}/models/tokenizer/training.json"]


def diffusion_subjects(ds):
    """Subjects whose epochs train the dataset's diffusion backbone (default: all of them)."""
    return CFG.datasets[ds].diffusion_subjects


def diffusion_epochs(wildcards):
    return expand(f"{RESULTS}/{wildcards.ds}/sub-{{sub}}/epochs-epo.fif",
                  sub=diffusion_subjects(wildcards.ds))


def dataset_diffusion_info(wildcards):
    """The backbone's training summary and samples when the dataset has a backbone."""
    if CFG.datasets[wildcards.ds].diffusion is None:
        return []
    base = f"{RESULTS}/{wildcards.ds}/models/diffusion"
    return [f"{base}/training.json", f"{base}/samples.npz", f"{base}/samples.json"]
