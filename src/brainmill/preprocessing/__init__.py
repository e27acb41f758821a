"""Preprocessing: a :class:`~brainmill.datasets.base.Recording` → labelled epochs + QC."""

from .eeg import PreprocessResult, channel_statistics, preprocess

__all__ = ["PreprocessResult", "channel_statistics", "preprocess"]
