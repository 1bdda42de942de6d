"""Event cameras (DVS): a simulated sensor, AEDAT4 recordings, live iniVation cameras, the eDVS."""

from .driver import DVS, DVSParams, GESTURES

__all__ = ["DVS", "DVSParams", "GESTURES"]
