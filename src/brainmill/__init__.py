"""brainmill: raw EEG and fMRI recordings to features, trained decoders and reports."""

__version__ = "0.1.0"
