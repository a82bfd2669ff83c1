"""Exceptions that the CLI turns into a one-line message instead of a traceback."""


class XcatError(Exception):
    """Base class: a problem the user can fix (bad input, bad config, missing file)."""


class ConfigError(XcatError):
    """The configuration (TOML file or command-line flags) is invalid."""


class DataError(XcatError):
    """An input data file is missing, unreadable or too dirty to use."""
