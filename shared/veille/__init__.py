"""veille: event-driven monitoring of what people say about an organisation."""

__version__ = "0.1.0"

__all__ = ["__version__"]
