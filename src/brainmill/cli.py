"""The ``brainmill`` command: datasets, info, schema, check-config, validate, run."""

from __future__ import annotations

import argparse
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from . import __version__
from .errors import BrainmillError
from .versions import library_versions


def _cmd_datasets(args: argparse.Namespace) -> int:
    from .datasets import FMRI_SOURCES, SOURCES

    width = max(len(k) for k in {**SOURCES, **FMRI_SOURCES})
    for title, table in [("EEG", SOURCES), ("fMRI (modality: fmri)", FMRI_SOURCES)]:
        print(f"{title} dataset sources (config key `source.kind`):")
        for kind, (_, text) in table.items():
            print(f"  {kind:<{width}}  {text}")
    print("\nExample configs: config/config.yaml (synthetic EEG + synthetic fMRI), "
          "config/physionet.yaml (eegbci), config/bonn.yaml (bonn), config/dreams.yaml "
          "(dreams), config/abide.yaml (abide).")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    print(f"python     {platform.python_version()} ({platform.platform()})")
    for name, version in library_versions().items():
        print(f"{name:<11}{version}")
    try:
        import torch

        if torch.cuda.is_available():
            names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            print(f"GPU        yes: {', '.join(names)} (CUDA {torch.version.cuda})")
        else:
            print("GPU       no CUDA device seen by torch; torch models train on the CPU")
    except ImportError:
        print("GPU       unknown (torch is not installed)")
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    from .config import write_schema

    path = write_schema(args.output)
    print(f"wrote {path}")
    return 0


def _cmd_check_config(args: argparse.Namespace) -> int:
    from .config import load_config

    cfg = load_config(args.config)
    for name, ds in cfg.datasets.items():
        if ds.modality == "fmri":
            n = "all" if ds.subjects == "all" else len(ds.subjects)
            target = ds.decoding.target if ds.decoding else "none"
            print(f"{name}: fMRI source {ds.source.kind}, subjects {n}, connectivity "
                  f"{ds.connectivity.kind}, VAE demographics {ds.demographics}, decoding "
                  f"target {target}")
            continue
        decoders = ", ".join(ds.decoders.enabled())
        print(f"{name}: source {ds.source.kind}, {len(ds.subjects)} subject(s), "
              f"classes {ds.class_names}, decoders {decoders}")
    print(f"{args.config}: valid")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from .validation import format_problems, validate_file

    cfg, problems = validate_file(args.config)
    errors = [p for p in problems if p.level == "error"]
    if problems:
        print(format_problems(problems))
        print()
    if cfg is None:
        print(f"{args.config}: invalid configuration ({len(problems)} problem(s))")
        return 1
    n_subjects = sum(len(ds.subjects) if isinstance(ds.subjects, list) else 0
                     for ds in cfg.datasets.values())
    checked = f"{len(cfg.datasets)} dataset(s)" + (f", {n_subjects} listed subject(s)"
                                                   if n_subjects else "")
    if errors:
        print(f"{args.config}: {len(errors)} error(s), {len(problems) - len(errors)} "
              f"warning(s) in {checked}; fix the errors before running the workflow")
        return 1
    print(f"{args.config}: config and data valid ({checked}"
          + (f"; {len(problems)} warning(s)" if problems else "") + ")")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    exe = shutil.which("snakemake")
    if exe is None:
        raise BrainmillError("snakemake is not on PATH; install brainmill with pip first")
    cmd = [exe, "--cores", str(args.cores), "--configfile", str(args.config), *args.extra]
    print("+ " + " ".join(cmd))
    return subprocess.call(cmd)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``brainmill`` command."""
    parser = argparse.ArgumentParser(
        prog="brainmill",
        description="EEG and fMRI recordings to features, decoders and reports. "
        "The workflow runs with `snakemake --cores all`; this command helps around it.",
    )
    parser.add_argument("--version", action="version", version=f"brainmill {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("datasets", help="list the dataset sources brainmill can load").set_defaults(
        func=_cmd_datasets)
    sub.add_parser("info", help="print library versions and whether a GPU is seen").set_defaults(
        func=_cmd_info)
    p = sub.add_parser("schema", help="regenerate the workflow's config JSON schema")
    p.add_argument("--output", type=Path, default=Path("workflow/schemas/config.schema.json"))
    p.set_defaults(func=_cmd_schema)
    p = sub.add_parser("check-config", help="validate a config file and summarise it")
    p.add_argument("config", type=Path)
    p.set_defaults(func=_cmd_check_config)
    p = sub.add_parser("validate", help="check a config and the data it points to (files "
                       "open, events, channels, sampling rates, participants, folds) and list "
                       "every problem")
    p.add_argument("config", type=Path)
    p.set_defaults(func=_cmd_validate)
    p = sub.add_parser("run", help="run the Snakemake workflow with a config (from the repo root)")
    p.add_argument("--config", type=Path, default=Path("config/config.yaml"))
    p.add_argument("--cores", default="all")
    p.add_argument("extra", nargs=argparse.REMAINDER, help="further snakemake arguments")
    p.set_defaults(func=_cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``brainmill`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BrainmillError as err:
        print(f"brainmill: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
