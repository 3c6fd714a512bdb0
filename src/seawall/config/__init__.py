"""Configuration: the typed schema, loading with path-named errors, and building the stack."""

from seawall.config.load import ConfigError, load_config, parse_config
from seawall.config.schema import Config

__all__ = ["Config", "ConfigError", "load_config", "parse_config"]
