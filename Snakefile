# brainmill workflow: load -> preprocess -> features -> decode -> report.
# Run from the repository root:  snakemake --cores all  [--configfile config/physionet.yaml]
from snakemake.utils import min_version, validate

from brainmill.config import validate_config

min_version("8.0")


# The default config, unless --configfile names others: Snakemake would merge a `configfile:`
# with them, so a user's file would also run (and fail on) the default datasets.
if not workflow.config_settings.configfiles:

    configfile: "config/config.yaml"


# pydantic gives the precise message (key path, closest valid name); the generated JSON schema
# is the workflow's own check and fails if it ever drifts from the models.
CFG = validate_config(config, source="the workflow config")
# set_default=False: filling defaults from every branch of the source union would corrupt it
validate(config, "workflow/schemas/config.schema.json", set_default=False)

RESULTS = CFG.results_dir
REPORTS = CFG.reports_dir
LOGS = CFG.logs_dir


wildcard_constraints:
    ds="[A-Za-z0-9_]+",
    sub="[A-Za-z0-9]+",
    decoder="[a-z0-9_]+",
    feature="[a-z0-9_]+",


include: "workflow/rules/common.smk"
include: "workflow/rules/load.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/decode.smk"
include: "workflow/rules/tokens.smk"
include: "workflow/rules/diffusion.smk"
include: "workflow/rules/fmri.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        all_targets(),
    default_target: True


# A run with failed jobs (with --keep-going: after every other job) still leaves a dataset
# report: the subjects that finished, and each failed one with the reason from its job log.
# It is marked PARTIAL and dated 1970, so the next run that can rebuilds it with the rules.
onerror:
    from brainmill.reports_partial import write_partial_reports

    write_partial_reports(CFG)
