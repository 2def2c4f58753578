"""Errors a user can cause: the CLI prints their message as one line and exits with 2."""


class UserError(Exception):
    """Something the user can fix (missing data, bad budget, foreign artifact).

    The message must say what is wrong and what to do about it, in one line.
    """

    exit_code = 2
