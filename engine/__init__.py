"""The matching engine: Numba kernels (``engine.kernels``) behind ``Engine``, and the reference
engine that is their oracle. See docs/engine.md."""

from engine.core import Engine
from engine.invariants import InvariantViolation
from engine.reference import ReferenceEngine

__all__ = ["Engine", "InvariantViolation", "ReferenceEngine"]
