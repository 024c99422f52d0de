"""Content negotiation: JSON or msgpack bodies, both through msgspec, decoders built once.

The request body's format comes from ``Content-Type``; the response's from ``Accept``, falling
back to the request's format (so a msgpack client that sends no ``Accept`` gets msgpack back).
"""

from __future__ import annotations

import enum
from typing import Any, Final, Generic, TypeVar

import msgspec

from azr.serve._http import HttpError

__all__ = ["Format", "TypedDecoder", "encode", "request_format", "response_format"]

T = TypeVar("T")


class Format(enum.Enum):
    JSON = "application/json"
    MSGPACK = "application/msgpack"


_MEDIA: Final[dict[str, Format]] = {
    "application/json": Format.JSON,
    "application/msgpack": Format.MSGPACK,
    "application/x-msgpack": Format.MSGPACK,
    "application/vnd.msgpack": Format.MSGPACK,
}
_JSON_ENCODER: Final = msgspec.json.Encoder()
_MSGPACK_ENCODER: Final = msgspec.msgpack.Encoder()


class TypedDecoder(Generic[T]):
    """Decodes one request type from either format. A body that is not valid JSON/msgpack is
    a 400; one that is, but does not fit the type (missing, unknown or mistyped fields), a 422
    whose message names the offending path (``$.items[3].answer``)."""

    def __init__(self, type_: type[T]) -> None:
        self._json = msgspec.json.Decoder(type_)
        self._msgpack = msgspec.msgpack.Decoder(type_)

    def decode(self, body: bytes, fmt: Format) -> T:
        decoder = self._json if fmt is Format.JSON else self._msgpack
        try:
            return decoder.decode(body)
        except msgspec.ValidationError as exc:
            raise HttpError(422, "invalid_request", str(exc)) from None
        except msgspec.DecodeError as exc:
            what = "JSON" if fmt is Format.JSON else "msgpack"
            raise HttpError(400, "bad_request", f"the body is not valid {what}: {exc}") from None


def _media_type(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


def request_format(headers: dict[str, str] | Any) -> Format:
    """The body's format, from ``Content-Type`` (JSON when absent)."""
    value = headers.get("content-type")
    if value is None or not value.strip():
        return Format.JSON
    fmt = _MEDIA.get(_media_type(value))
    if fmt is None:
        raise HttpError(
            415,
            "unsupported_media_type",
            f"Content-Type {value!r} is not accepted; send application/json or application/msgpack",
        )
    return fmt


def _accepted(accept: str) -> list[tuple[str, float]]:
    ranges: list[tuple[str, float]] = []
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        if not media:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        ranges.append((media.lower(), q))
    return ranges


def _quality(fmt: Format, ranges: list[tuple[str, float]]) -> float:
    # The most specific matching range decides (RFC 9110, section 12.5.1).
    best: tuple[int, float] = (-1, 0.0)
    names = [m for m, f in _MEDIA.items() if f is fmt]
    for media, q in ranges:
        if media in names:
            rank = 2
        elif media in ("application/*", "*/*"):
            rank = 1 if media == "application/*" else 0
        else:
            continue
        if rank > best[0]:
            best = (rank, q)
    return best[1]


def response_format(headers: dict[str, str] | Any, preferred: Format) -> Format:
    """The response's format: the acceptable one of highest quality, ``preferred`` on ties."""
    accept = headers.get("accept")
    if accept is None or not accept.strip():
        return preferred
    ranges = _accepted(accept)
    other = Format.MSGPACK if preferred is Format.JSON else Format.JSON
    q_preferred, q_other = _quality(preferred, ranges), _quality(other, ranges)
    if q_preferred <= 0 and q_other <= 0:
        raise HttpError(
            406,
            "not_acceptable",
            f"cannot answer in any of {accept!r}; accept application/json or application/msgpack",
        )
    return preferred if q_preferred >= q_other else other


def encode(value: object, fmt: Format) -> bytes:
    if fmt is Format.JSON:
        return _JSON_ENCODER.encode(value)
    return _MSGPACK_ENCODER.encode(value)
