"""The error every alert channel raises when a delivery failed (imported by the channel
modules; :mod:`.channels` dispatches to them and never gets imported back)."""

from __future__ import annotations


class ChannelError(Exception):
    """A delivery failed; ``transient`` says whether trying again may help (connection
    refused, timeout, HTTP 5xx/429, SMTP 4xx)."""

    def __init__(self, message: str, transient: bool = True):
        super().__init__(message)
        self.transient = transient
