"""A server-sent events decoder (the WHATWG event-stream format), fed one line at a time so
the same code serves httpx's sync `iter_lines()` and async `aiter_lines()`."""

from __future__ import annotations

from dataclasses import dataclass

from skillmix_client.types import Job


@dataclass(frozen=True)
class ServerSentEvent:
    event: str
    data: str
    id: str | None = None


class SSEDecoder:
    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, line: str) -> ServerSentEvent | None:
        """Take one line (without its line ending); return an event when a blank line ends one."""
        line = line.rstrip("\r\n")
        if not line:
            if not self._data and not self._event:
                return None
            event = ServerSentEvent(self._event or "message", "\n".join(self._data), self._id)
            self._event, self._data = "", []
            return event
        if line.startswith(":"):  # a comment, e.g. the server's keep-alive
            return None
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id = value
        return None


class JobEvents:
    """Reads `/v1/jobs/{id}/events`: a `progress` event with the job on each change, then
    `end`. `feed` returns each new snapshot of the job; `ended` tells the stream is over."""

    def __init__(self) -> None:
        self._decoder = SSEDecoder()
        self._last = ""
        self.ended = False

    def feed(self, line: str) -> Job | None:
        event = self._decoder.feed(line)
        if event is None or event.event not in ("progress", "end"):
            return None
        self.ended = event.event == "end"
        if event.data == self._last:
            return None
        self._last = event.data
        return Job.model_validate_json(event.data)
