"""The project's user-error type: what a user can cause and fix (a bad option, a missing or malformed file, a
bad spec, an unreachable judge). ``icdpo-eval`` prints these as one line and exits 2; anything else is a bug
and prints its traceback. A :class:`ValueError` subclass, so code written against lm-eval's conventions (which
raise ValueError for bad arguments) still catches it. Imports nothing."""

from __future__ import annotations


class UserError(ValueError):
    """Base of every error a user can fix; the message names the option, file or row and what to do."""


class OptionError(UserError):
    """A bad model_arg, task setting or command-line value."""
