"""One exception type per exit code (docs/reference.md, "Exit codes").

Every failure the shim reports is a ShimError. Its message never contains a
secret value: callers build messages from variable names, canonical
references, statuses and file paths only.
"""

from __future__ import annotations


class ShimError(Exception):
    """A failure with an exit code and an optional variable/reference context."""

    exit_code = 1
    kind = "error"

    def __init__(self, message: str, *, variable: str | None = None,
                 reference: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.variable = variable
        self.reference = reference
        self.hint = hint

    def with_context(self, *, variable: str | None = None,
                     reference: str | None = None) -> "ShimError":
        """A copy of this error attributed to a variable and reference."""
        copy = type(self)(self.message, variable=variable or self.variable,
                          reference=reference or self.reference, hint=self.hint)
        return copy

    def line(self) -> str:
        """The one line shown to the user: variable, reference, what, what to do."""
        parts = []
        if self.variable:
            parts.append(self.variable)
        if self.reference and self.reference not in self.message:   # said once is enough
            parts.append(f"({self.reference})")
        head = " ".join(parts)
        text = f"{head}: {self.message}" if head else self.message
        if self.hint:
            text += f"; {self.hint}"
        return text

    def __str__(self) -> str:
        return self.line()


class UsageError(ShimError):
    """Bad option, malformed reference, bad duration."""
    exit_code = 64
    kind = "usage"


class UnusableValue(ShimError):
    """NUL byte, invalid UTF-8, too large for the environment, not JSON."""
    exit_code = 65
    kind = "unusable"


class NotFound(ShimError):
    """File, path, key or version does not exist (or was deleted/destroyed)."""
    exit_code = 66
    kind = "not_found"


class Unavailable(ShimError):
    """The provider could not be reached within the deadline."""
    exit_code = 69
    kind = "unavailable"


class PermissionDenied(ShimError):
    """401/403, unreadable file, disabled secret, privilege change refused."""
    exit_code = 77
    kind = "permission"


class ConfigError(ShimError):
    """Unresolved placeholder, NAME and NAME_FILE both set, unknown user, root refused."""
    exit_code = 78
    kind = "config"


class NotRead(ShimError):
    """`shim check` left a reference unread: reading it would change the store's state (mint
    a credential, use up a single-use secret id). Not a failure of check, which lists it;
    the code is EX_SOFTWARE because any other command receiving one would be a bug."""
    exit_code = 70
    kind = "not_read"

    def __init__(self, message: str, *, effect: str = "would change the store", **context):
        super().__init__(message, **context)
        self.effect = effect        # what reading would have done, for check's STATUS column

    def with_context(self, *, variable: str | None = None,
                     reference: str | None = None) -> "ShimError":
        copy = super().with_context(variable=variable, reference=reference)
        copy.effect = self.effect
        return copy


class CommandNotExecutable(ShimError):
    exit_code = 126
    kind = "not_executable"


class CommandNotFound(ShimError):
    exit_code = 127
    kind = "command_not_found"
