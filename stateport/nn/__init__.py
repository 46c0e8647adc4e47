"""Torch side: the streaming-module protocol and streaming layers that know their own state."""

from .attention import ChunkedSelfAttention
from .audio_in import AudioInput
from .declared import DeclaredStepModule, declare_step, take_valid, valid_mask
from .layers import (CausalConv1d, LeftContextConv, RunningMeanNorm, StreamingGRU, StreamingLSTM,
                     StreamingLSTMCell)
from .protocol import (InputSpec, MultiGraphModule, StateDecl, StreamingConfig, StreamingLayer,
                       StreamingModule)
from .subsampling import StridedCausalConv1d

__all__ = ["AudioInput", "CausalConv1d", "ChunkedSelfAttention", "DeclaredStepModule", "InputSpec", "LeftContextConv", "MultiGraphModule",
           "RunningMeanNorm",
           "StateDecl", "StreamingConfig", "StreamingGRU", "StreamingLSTM", "StreamingLSTMCell",
           "StreamingLayer", "StreamingModule", "StridedCausalConv1d", "declare_step", "take_valid", "valid_mask"]
