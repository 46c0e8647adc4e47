"""Torch side: the streaming-module protocol and streaming layers that know their own state."""

from .declared import DeclaredStepModule, declare_step
from .layers import CausalConv1d, StreamingGRU, StreamingLSTM, StreamingLSTMCell
from .protocol import StateDecl, StreamingConfig, StreamingLayer, StreamingModule

__all__ = ["CausalConv1d", "DeclaredStepModule", "StateDecl", "StreamingConfig", "StreamingGRU",
           "StreamingLSTM", "StreamingLSTMCell", "StreamingLayer", "StreamingModule", "declare_step"]
