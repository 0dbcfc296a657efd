"""poolwatch: find cryptocurrency mining in network traffic and say who is behind it."""

__version__ = "0.1.0"
