"""The engine's exceptions."""


class DeviceDown(RuntimeError):
    """A device raised, died more often than ``max_restarts``, or did not answer in ``timeout_s``."""
