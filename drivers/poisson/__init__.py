"""Poisson spike encoder: turns intensities into spike trains (a software sensor)."""

from .driver import PoissonEncoder, PoissonParams

__all__ = ["PoissonEncoder", "PoissonParams"]
