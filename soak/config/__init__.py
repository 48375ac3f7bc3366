"""The config package: YAML sources and profiles, strict field parsing, the parsed schema.

`load_config` is the entry point; it never imports phase code: each phase's own section is
parsed by the parser the phase registry hands in (see `soak.phases`).
"""

from soak.config.fields import Secret
from soak.config.loader import PROFILES, ConfigError, describe, load_config
from soak.config.schema import Config

__all__ = ["PROFILES", "Config", "ConfigError", "Secret", "describe", "load_config"]
