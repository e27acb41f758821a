"""The shared torch layer core every brainmill decoder is built from.

Layers are chosen by name in the config through :func:`brainmill.nn.registry.make_norm` and
:func:`brainmill.nn.registry.make_act`. Each module's docstring gives its formula and source;
``../shared/reference/layers.md`` is the reference it was re-implemented from.
"""

# attention, positions, losses, SSM and vector quantiser
from brainmill.nn.attention import MultiHeadAttention as MultiHeadAttention
from brainmill.nn.losses import z_loss as z_loss
from brainmill.nn.positions import LearnedPosition as LearnedPosition
from brainmill.nn.positions import RotaryEmbedding as RotaryEmbedding
from brainmill.nn.positions import SinusoidalPosition as SinusoidalPosition
from brainmill.nn.quantizer import EMAVectorQuantizer as EMAVectorQuantizer
from brainmill.nn.quantizer import QuantizerOutput as QuantizerOutput
from brainmill.nn.ssm import S4D as S4D

# isort: split
# norms, activations, MLP and the name registry
from brainmill.nn.activations import CRReLU as CRReLU
from brainmill.nn.activations import GroupRational as GroupRational
from brainmill.nn.activations import SwiGLU as SwiGLU
from brainmill.nn.mlp import MLP as MLP
from brainmill.nn.norms import BatchChannelNorm as BatchChannelNorm
from brainmill.nn.norms import EvoNormB0 as EvoNormB0
from brainmill.nn.norms import EvoNormS0 as EvoNormS0
from brainmill.nn.norms import UnifiedNorm as UnifiedNorm
from brainmill.nn.norms import WSConv1d as WSConv1d
from brainmill.nn.norms import WSLinear as WSLinear
from brainmill.nn.registry import ACTS as ACTS
from brainmill.nn.registry import NORMS as NORMS
from brainmill.nn.registry import make_act as make_act
from brainmill.nn.registry import make_norm as make_norm

# isort: split
# blocks
from brainmill.nn.blocks import GatedSSMBlock as GatedSSMBlock
from brainmill.nn.blocks import TransformerBlock as TransformerBlock
