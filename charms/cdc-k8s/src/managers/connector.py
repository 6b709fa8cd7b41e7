"""What the source's error log says of the connector (pure logic).

The source's log4j2 config (templates/source-log4j2.yaml.j2) writes each ERROR event to a small
file as one line: `<ISO time> <root cause: class: message><tab><log message>`, without the stack
trace (log4j2 writes a line break inside them as a backslash and an r or n). The last line is
what the connector last failed on: its root cause (a wrapping ConnectException says only that
"an exception occurred"), or the message of an error logged without an exception.
"""

from __future__ import annotations

MAX_ERROR_CHARS = 300  # a status message, not a log


def last_error(log: str) -> str | None:
    """The last line's error, without its time, on one line and cut short; None if there is none."""
    lines = [line for line in log.splitlines() if line.strip()]
    if not lines:
        return None
    _, _, event = lines[-1].strip().partition(" ")
    cause, _, message = event.partition("\t")
    error = _one_line(cause) or _one_line(message)
    if len(error) > MAX_ERROR_CHARS:
        error = error[: MAX_ERROR_CHARS - 3].rstrip() + "..."
    return error or None


def _one_line(text: str) -> str:
    return " ".join(text.replace("\\r", " ").replace("\\n", " ").split())
