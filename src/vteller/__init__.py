"""vteller: remote-banking video teller service."""
__version__ = "0.1.0"
