"""Python SDK for skillmix."""

__version__ = "0.1.0"
