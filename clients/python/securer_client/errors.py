"""Exceptions: one class per error code of PROTOCOL.md ("Errors")."""


class SecurerError(Exception):
    """Base of every error this client raises."""


class ServerError(SecurerError):
    """The server refused a request or ended it with an error event.

    .code is the protocol's error code, .message its message, .retry_after
    the seconds the server suggests waiting (busy, limit) or None."""

    code = "internal"

    def __init__(self, code, message, retry_after=None):
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.retry_after = code, message, retry_after

    @staticmethod
    def from_event(ev):
        """The exception for an error event ({"type":"error",...})."""
        body = ev.get("error") or {}
        code = body.get("code", "internal")
        cls = ERRORS.get(code, ServerError)
        return cls(code, body.get("message", ""), body.get("retry_after"))


class BadRequestError(ServerError):
    """Not JSON, an unknown member or op, a wrong combination."""


class NotFoundError(ServerError):
    """No such session, pool, execution or waiting tool call."""


class InvalidConfigError(ServerError):
    """A tool or option was refused."""


class PoolBusyError(ServerError):
    """Every session of the pool stayed busy for acquire_timeout."""


class BusyError(ServerError):
    """Sandboxes are starting for others; retry after .retry_after."""


class ClosedError(ServerError):
    """The session or pool was closed."""


class RejectedError(ServerError):
    """Code refused before it ran (too long, over max_executions)."""


class LimitError(ServerError):
    """A limit of the server or of this connection is reached."""


class IdleError(ServerError):
    """The connection sent nothing for the server's idle timeout; closed."""


class StartTimeoutError(ServerError):
    """The sandbox did not start within its start timeout."""


class StartFailedError(ServerError):
    """The sandbox failed to start."""


class SandboxUnavailableError(ServerError):
    """The host could not start the sandbox."""


class FileRefusedError(ServerError):
    """A file name, link, missing file or size was refused."""


class NeedsSandboxError(ServerError):
    """Refused on a server without the sandbox (or this client wants one)."""


class UnauthorizedError(ServerError):
    """No auth first, or a wrong token; the connection is closed."""


class DrainingError(ServerError):
    """The server is shutting down."""


class CanceledError(ServerError):
    """The request was given up (connection closed, or cancel) before its code ran."""


class InternalError(ServerError):
    """Anything else; the message says what."""


ERRORS = {
    "bad_request": BadRequestError,
    "not_found": NotFoundError,
    "invalid_config": InvalidConfigError,
    "pool_busy": PoolBusyError,
    "busy": BusyError,
    "closed": ClosedError,
    "rejected": RejectedError,
    "limit": LimitError,
    "idle": IdleError,
    "start_timeout": StartTimeoutError,
    "start_failed": StartFailedError,
    "sandbox_unavailable": SandboxUnavailableError,
    "file_refused": FileRefusedError,
    "canceled": CanceledError,
    "needs_sandbox": NeedsSandboxError,
    "unauthorized": UnauthorizedError,
    "draining": DrainingError,
    "internal": InternalError,
}
for _code, _cls in ERRORS.items():
    _cls.code = _code


class ConnectionClosed(SecurerError, ConnectionError):
    """The connection ended (the server closed it, or this client did)
    before the request's final event. .cause is the server's last error
    without an id (idle, draining, ...) when it said why, else None."""

    def __init__(self, message, cause=None):
        super().__init__(message)
        self.cause = cause


class StateLostWarning(UserWarning):
    """The session's R was replaced (it died: out of memory, a crash, a kill
    after a timeout): the execution ran in a new R, without the variables
    earlier executions made. The result's "state_lost_reason" says why."""
