"""The service's one exception tree: every failure the core can report, with its data as attributes.

Libraries' own exceptions (``jwt.*``, ``argon2.*``, ``redis.*``) are translated into these in the
module that wraps the library; ``web/pipeline.py`` maps each family to an HTTP answer in one table.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base class; never raised directly."""


class SettingsError(ServiceError):
    """A setting is missing or invalid; startup stops with one line per bad key."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"setting {key}: {problem}")
        self.key = key
        self.problem = problem
        self.errors: tuple[SettingsError, ...] = (self,)

    @classmethod
    def several(cls, errors: list[SettingsError]) -> SettingsError:
        """One error standing for all of ``errors`` (one line each); its key is the first one's."""
        if len(errors) == 1:
            return errors[0]
        combined = cls(errors[0].key, errors[0].problem)
        combined.args = ("\n".join(str(error) for error in errors),)
        combined.errors = tuple(errors)
        return combined


class StoreUnavailable(ServiceError):
    """Redis cannot be reached or answered with an error; never a verdict about a session."""


class SchemaMismatch(ServiceError):
    """The data in Redis was written by a newer release, or by another program: refused, never rewritten."""


class StoreBug(ServiceError):
    """Redis refused a command or a script failed: a bug in this service or a foreign key, never an
    outage. Answered 500 and logged; not counted as a store error."""


class CredentialsChanged(ServiceError):
    """A user's credentials changed between reading them and acting on them (a racing change)."""


class TokenError(ServiceError):
    """An access token is malformed, forged, of the wrong type, or otherwise unusable."""


class TokenExpired(TokenError):
    """An authentic access token whose ``exp`` has passed; the claims are still readable."""

    def __init__(self, claims: object) -> None:
        super().__init__("access token expired")
        self.claims = claims


class AuthenticationRequired(ServiceError):
    """The request needs a signed-in user and has none; ``refreshable`` says a refresh may help."""

    def __init__(self, reason: str, *, refreshable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.refreshable = refreshable


class RefreshFailed(ServiceError):
    """A refresh token could not be used: missing, invalid, expired, revoked, or reused."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CredentialsError(ServiceError):
    """Login failed. One message for every cause, so the answer never tells which one."""

    def __init__(self, message: str = "Incorrect username or password.") -> None:
        super().__init__(message)


class SecondFactorRequired(ServiceError):
    """Not an error to show: the password was right and the user has TOTP on, so the sign-in waits for
    a code. ``pending`` names the waiting sign-in (core/totp.py); it is not a session."""

    def __init__(self, pending: str, expires: float) -> None:
        super().__init__("Enter the code from your authenticator app.")
        self.pending = pending
        self.expires = expires


class PasskeyRefused(CredentialsError):
    """A passkey sign-in failed: unknown credential, bad signature, wrong origin or RP, replayed or
    expired challenge, a cloned authenticator. One message for every cause, like a password's."""

    def __init__(self) -> None:
        ServiceError.__init__(self, "That passkey could not be used to sign in.")


class Throttled(ServiceError):
    """Too many failed sign-ins for this username or from this client; try again in ``retry_after`` s.

    ``scope`` (``user`` or ``ip``) is for the log only: the answer must not say which window is full.
    """

    def __init__(self, retry_after: int, *, scope: str = "") -> None:
        wait = (f"{retry_after} second{'s' if retry_after != 1 else ''}" if retry_after < 120
                else f"{-(-retry_after // 60)} minutes")
        super().__init__(f"Too many failed sign-in attempts. Try again in {wait}.")
        self.retry_after = retry_after
        self.scope = scope


class StepUpRequired(ServiceError):
    """A sensitive action, and the session's last authentication is older than ``sessions.step_up_window``:
    the user confirms it is them first (403, or 303 to the confirmation page)."""

    def __init__(self) -> None:
        super().__init__("Confirm it is you to continue: sign in again for this change.")


class CsrfRejected(ServiceError):
    """An unsafe request came from another site, or without the token that proves it did not."""


class InvalidInput(ServiceError):
    """A request body, form or parameter is malformed or too large."""


class NotFound(ServiceError):
    """Nothing is at this path (404)."""


class MethodNotAllowed(ServiceError):
    """This path answers other methods (405, with ``Allow``)."""

    def __init__(self, allowed: set[str]) -> None:
        super().__init__("This address does not accept that method.")
        self.allowed = allowed


class BodyTimeout(ServiceError):
    """A request body did not arrive within ``server.body_timeout`` (a slow-body attack, or a lost client)."""


class UserError(ServiceError):
    """A user-management command cannot be carried out (unknown user, name taken, bad name)."""
