# Helpers shared by the rules: target lists and per-stage parameters (rerun triggers).


def subjects(ds):
    return CFG.datasets[ds].subjects


def enabled_decoders(ds):
    return list(CFG.datasets[ds].decoders.enabled())


def all_targets():
    targets = []
    for ds in CFG.datasets:
        targets.append(f"{REPORTS}/{ds}/index.html")
        targets += expand(f"{REPORTS}/{ds}/sub-{{sub}}.html", sub=subjects(ds))
    return targets


def stage_params(section):
    """The config section a stage depends on, so Snakemake reruns it when that changes."""

    def get(wildcards):
        ds_cfg = CFG.datasets[wildcards.ds]
        if section == "load":
            return {"seed": CFG.seed, "source": ds_cfg.source.model_dump(mode="json"),
                    "events": ds_cfg.events}
        if section == "decode":
            return {"seed": CFG.seed,
                    "decoder": ds_cfg.decoders.enabled()[wildcards.decoder].model_dump(mode="json"),
                    "evaluation": ds_cfg.evaluation.model_dump(mode="json")}
        if section == "features":
            return getattr(ds_cfg.features, wildcards.feature).model_dump(mode="json")
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
