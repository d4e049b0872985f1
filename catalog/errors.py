class ApplicationError(Exception):
    """A domain rule refused the operation; the message is safe to show to the caller."""

    def __init__(self, message: str, extra: dict | None = None):
        super().__init__(message)
        self.message = message
        self.extra = extra or {}
