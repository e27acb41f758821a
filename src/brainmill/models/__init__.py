"""The torch models: TFM tokenizer, token Transformer, EEG diffusion + latent fusion, DemoVAE.

- :mod:`brainmill.models.frontend`: robust scaling and STFT magnitude (torch);
- :mod:`brainmill.models.tokenizer`: :class:`TFMTokenizer` and :class:`TokenizerConfig`;
- :mod:`brainmill.models.transformer`: :class:`TokenTransformer` and
  :class:`TokenTransformerConfig`;
- :mod:`brainmill.models.diffusion`: :class:`EEGDiffusion` (state-space DDPM denoiser) and
  :class:`DiffusionConfig`; :mod:`brainmill.models.latent_fusion`:
  :class:`LatentFusionTransformer` and :class:`LatentFusionConfig`;
- :mod:`brainmill.models.vae`: :class:`DemoVAE` (with :class:`DemographicEncoder` and the
  network :class:`DemoVAENet`);
- :func:`save_model` / :func:`load_model`: checkpoints ``{"kind", "config", "state_dict"}``.

Imports only torch and numpy.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from brainmill.io import atomic_path

from .diffusion import DiffusionConfig, EEGDiffusion
from .frontend import n_frames, robust_scale, stft_magnitude
from .latent_fusion import LatentFusionConfig, LatentFusionTransformer
from .tokenizer import TFMTokenizer, TokenizerConfig, TokenizerOutput
from .transformer import TokenTransformer, TokenTransformerConfig
from .vae import DemographicEncoder, DemoVAE, DemoVAENet, DemoVAENetConfig

__all__ = ["MODELS", "TFMTokenizer", "TokenTransformer", "TokenTransformerConfig",
           "TokenizerConfig", "TokenizerOutput", "load_model", "n_frames", "robust_scale",
           "save_model", "stft_magnitude"]
__all__ += ["DiffusionConfig", "EEGDiffusion", "LatentFusionConfig", "LatentFusionTransformer"]
__all__ += ["DemoVAE", "DemoVAENet", "DemoVAENetConfig", "DemographicEncoder"]

#: checkpoint ``kind`` → (model class, config class).
MODELS: dict[str, tuple[type[nn.Module], type]] = {
    "tfm_tokenizer": (TFMTokenizer, TokenizerConfig),
    "token_transformer": (TokenTransformer, TokenTransformerConfig),
    "demovae_net": (DemoVAENet, DemoVAENetConfig),
    "eeg_diffusion": (EEGDiffusion, DiffusionConfig),
    "latent_fusion": (LatentFusionTransformer, LatentFusionConfig),
}


def save_model(path: str | Path, model: nn.Module) -> Path:
    """Save ``model`` with its config to ``path`` atomically.

    The file holds ``{"kind", "config": config.to_dict(), "state_dict"}``; it is written to a
    temporary file in the same folder and moved into place with :func:`os.replace`, so a reader
    never sees a partial file (:func:`brainmill.io.atomic_path`). A ``torch.compile`` wrapper
    is unwrapped first.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    model = getattr(model, "_orig_mod", model)
    kinds = [k for k, (cls, _) in MODELS.items() if type(model) is cls]
    if not kinds:
        raise TypeError(f"save_model: cannot save a {type(model).__name__}; supported: "
                        f"{', '.join(cls.__name__ for cls, _ in MODELS.values())}")
    payload = {"kind": kinds[0], "config": model.config.to_dict(),
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    with atomic_path(path) as tmp:  # a full disk is a WriteError naming the file
        torch.save(payload, tmp)
    return Path(path)


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model saved by :func:`save_model`, in **eval** mode (call ``.train()`` to train).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a brainmill model checkpoint or names an unknown kind.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"load_model: no checkpoint at {path}")
    payload = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(payload, dict) or not {"kind", "config", "state_dict"} <= set(payload):
        raise ValueError(f"load_model: {path} is not a brainmill model checkpoint (expected the "
                         "keys kind, config, state_dict written by save_model)")
    kind = payload["kind"]
    if kind not in MODELS:
        raise ValueError(f"load_model: {path} holds unknown model kind {kind!r}; known: "
                         f"{', '.join(MODELS)}")
    model_cls, config_cls = MODELS[kind]
    model = model_cls(config_cls.from_dict(payload["config"]))
    model.load_state_dict(payload["state_dict"])
    return model.to(map_location).eval()
