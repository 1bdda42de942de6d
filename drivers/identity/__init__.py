"""The no-reservoir baseline: features are the inputs themselves."""

from .driver import Identity, IdentityParams

__all__ = ["Identity", "IdentityParams"]
