"""Seawall: an LLM API gateway that keeps the traffic that matters alive through surges."""

__version__ = "0.1.0"
__all__ = ["__version__"]
