"""
The errors and exit statuses every layer may raise or return.

This is the one module that the command line, the controller and the
commands share for failures, so none of them has to import another to
name one: ``UsageError`` is bad input (one line, exit status 2),
``Refused`` is a control-plane action the controller will not carry out.
"""

EXIT_OK, EXIT_FINDING, EXIT_BAD_INPUT = 0, 1, 2


class UsageError(Exception):
    """Bad input detected by a command; its message is the one line the user sees."""


class Refused(Exception):
    """An action the controller will not carry out; the message is the reason."""
