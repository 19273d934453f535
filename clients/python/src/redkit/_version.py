"""The package's version: the server's API version (``info.version`` of ``/openapi.json``)."""

__version__ = "0.1.0"
API_VERSION = "0.1.0"
