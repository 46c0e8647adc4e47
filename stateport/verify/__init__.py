"""Parity proofs: backend vs torch with state carried, streaming vs offline, for any chunking."""

from .parity import DEFAULT_SECONDS, DEFAULT_TOLERANCE, chunk_plan, prove_parity, run_stream
from .report import CheckResult, OutputDiff, ParityReport

__all__ = ["CheckResult", "DEFAULT_SECONDS", "DEFAULT_TOLERANCE", "OutputDiff", "ParityReport", "chunk_plan",
           "prove_parity", "run_stream"]
