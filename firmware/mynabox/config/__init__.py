"""The box's configuration: `load_config` gives frozen dataclasses or a ConfigError listing every problem.

model: the dataclasses the box reads; fields: typed, checked reads from the TOML tables; load: the file,
its sections, secrets and the files it names.
"""

from mynabox.config.load import (
    CONFIG_ENV,
    DEFAULT_PATH,
    DEV_CREDENTIALS_ENV,
    default_path,
    load_config,
    parse_config,
)
from mynabox.config.model import MASK, Config, ConfigError, Credential, Issue

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_PATH",
    "DEV_CREDENTIALS_ENV",
    "MASK",
    "Config",
    "ConfigError",
    "Credential",
    "Issue",
    "default_path",
    "load_config",
    "parse_config",
]
