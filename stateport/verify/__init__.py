"""Parity proofs: backend vs torch with state carried, streaming vs offline, for any chunking."""

from .parity import (DEFAULT_SECONDS, DEFAULT_TOLERANCE, MIN_PROOF_SECONDS, check_proof_options, chunk_plan,
                     prove_parity, prove_self, run_stream)
from .report import CheckResult, OutputDiff, ParityReport, parity_error, unproven_certificate

__all__ = ["CheckResult", "DEFAULT_SECONDS", "DEFAULT_TOLERANCE", "MIN_PROOF_SECONDS", "OutputDiff", "ParityReport",
           "check_proof_options", "chunk_plan", "parity_error", "prove_parity", "prove_self", "run_stream",
           "unproven_certificate"]
