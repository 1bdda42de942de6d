"""Liquid state machines (Maass, Natschläger & Markram 2002): spiking LIF reservoirs."""

from .driver import LiquidStateMachine, LSMParams

__all__ = ["LiquidStateMachine", "LSMParams"]
