"""The one exception type that entry points turn into a single line for the user."""


class UserError(Exception):
    """Something the user can fix (a config value, a missing file): the message says what and how."""
