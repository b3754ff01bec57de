"""The one error hierarchy: every foreseeable failure says what was tried and what to do next.

Only the CLI maps these to exit codes (see llmtp.cli.main); services and adapters raise them.
"""

from __future__ import annotations


class LlmtpError(Exception):
    """A failure a user can act on. `hint` says what to do next; `exit_code` is for the CLI."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None, *, details: list[str] | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details or []

    def render(self) -> str:
        """One paragraph: what failed and what to do next, then the relevant output lines."""
        text = self.message.rstrip(".") + "."
        if self.hint:
            text += " " + self.hint
        if self.details:
            text += "\n" + "\n".join(f"  {line}" for line in self.details)
        return text


class UsageError(LlmtpError):
    """Bad input from the user: a path, alias, profile or value that cannot be used."""

    exit_code = 2


class ConfigError(UsageError):
    """A settings file, profile, catalog or patch series that does not validate."""


class ModelFileError(UsageError):
    """A GGUF that is missing, truncated, unreadable or not GGUF at all."""


class ModelNotDownloadedError(UsageError):
    """A catalog or hub model that is not on disk (`llmtp serve` may pull it)."""


class ToolMissingError(LlmtpError):
    """A required external tool (cmake, compiler, nvcc, git, ...) is absent or too old."""

    exit_code = 3


class CommandError(LlmtpError):
    """An external command failed; carries the argv, exit code and distilled output lines."""

    exit_code = 4

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        argv: list[str] | None = None,
        returncode: int | None = None,
        details: list[str] | None = None,
    ):
        super().__init__(message, hint, details=details)
        self.argv = argv or []
        self.returncode = returncode


class BuildError(LlmtpError):
    """A llama.cpp build that failed, or came out without what the profile promised."""

    exit_code = 5


class ServeError(LlmtpError):
    """llama-server could not be started, kept alive, or stopped."""

    exit_code = 6


class NetworkError(LlmtpError):
    """A download or HTTP call that failed."""

    exit_code = 7


class NotOnHubError(NetworkError):
    """The hub answered, and has no such repo, revision or file (or hides it without a token)."""


class StorageError(LlmtpError):
    """llmtp's own directories (data, state, cache, config) cannot be written: read-only, full, or not ours."""

    exit_code = 8

    @classmethod
    def from_os_error(cls, exc: OSError) -> StorageError | None:
        """The error for an OSError that says a path cannot be written; None for any other OSError."""
        import errno

        where = exc.filename or "a file llmtp writes"
        what = {
            errno.EROFS: "is on a read-only file system",
            errno.ENOSPC: "is on a full disk",
            errno.EDQUOT: "is over the disk quota",
            errno.EACCES: "is not writable by this user (permission denied)",
            errno.EPERM: "cannot be created or changed here (operation not permitted)",
            errno.ENOTDIR: "has a file where a directory must be",
        }.get(exc.errno)
        if what is None:
            return None
        fix = (
            "free some space there, or"
            if exc.errno in (errno.ENOSPC, errno.EDQUOT)
            else "fix its owner or permissions, or"
            if exc.errno in (errno.EACCES, errno.EPERM)
            else ""
        )
        point = (
            "point llmtp at a writable directory: LLMTP_HOME=DIR (or data_dir, state_dir, cache_dir in "
            "config.toml); `llmtp config show` lists every path."
        )
        hint = f"{fix} {point}" if fix else point
        return cls(f"Cannot write {where}: it {what}", hint[0].upper() + hint[1:])
