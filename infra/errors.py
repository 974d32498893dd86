"""Errors a user can fix. The CLI prints them as one line; library callers can catch them."""


class UserError(Exception):
    """Bad input from the user: a path, file, key or field, with what was expected."""


class CheckpointError(UserError):
    """A checkpoint that cannot be loaded exactly (wrong file, missing/unexpected keys, shapes)."""


class ConfigError(UserError, ValueError):
    """A subnet config or search-space file that does not validate; the message names the field."""
