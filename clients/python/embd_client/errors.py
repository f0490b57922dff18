"""The one exception embd_client raises: the server's error (status, code, message), or why no answer came."""


class EmbdError(Exception):
    """An error answer from embd, or no answer at all.

    ``status`` is the HTTP status (``None`` when no answer came: a timeout or a connection that failed twice),
    ``code`` the server's error code (``"id_out_of_range"``, ``"too_many_connections"``, ...; ``"timeout"`` or
    ``"connection_failed"`` when no answer came, ``"http_<status>"`` for an answer that was not embd's JSON, such
    as libmicrohttpd's own HTML 431) and ``message`` the server's message.
    """

    def __init__(self, status, code, message):
        super().__init__(status, code, message)
        self.status = status
        self.code = code
        self.message = message

    def __str__(self):
        if self.status is None:
            return "%s: %s" % (self.code, self.message)
        return "%d %s: %s" % (self.status, self.code, self.message)


class EmbdTimeout(EmbdError, TimeoutError):
    """No answer within the client's connect or read timeout (also a TimeoutError)."""


class EmbdConnectionError(EmbdError, ConnectionError):
    """The connection failed, and failed again on a fresh one (also a ConnectionError)."""
