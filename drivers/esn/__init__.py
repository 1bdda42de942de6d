"""Echo-state networks (Jaeger 2001), the software reservoir every other device is compared with."""

from .driver import EchoStateNetwork, ESNParams

__all__ = ["EchoStateNetwork", "ESNParams"]
