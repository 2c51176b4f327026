"""The one way a JSON object of the wire is read: a strict pydantic model, then a code.

Strict means what the specs say: no extra keys, no coercion (``"7"`` is not 7, ``true`` is
not 1, ``2.0`` is not an integer).  Every failure becomes a :class:`DecodeError` with the
code the format's spec names, so the transports above map one exception to their answers.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from vitalchain.errors import DecodeError

__all__ = ["Strict", "WireObject", "load", "load_value"]

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class WireObject(Strict):
    """A JSON object of a spec: frozen, strict, with the ``encode``/``parse`` pair.

    ``_what`` names it in error messages and ``_code`` is the code its spec gives a
    malformed one.
    """

    _what: ClassVar[str] = "object"
    _code: ClassVar[str] = "decode_error"

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def encode(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def parse(cls, data: bytes | str) -> Self:
        return cls._versioned(load(cls, data, what=cls._what, code=cls._code))

    @classmethod
    def parse_value(cls, value: Any) -> Self:
        return cls._versioned(load_value(cls, value, what=cls._what, code=cls._code))

    @classmethod
    def _versioned(cls, obj: Self) -> Self:
        # A default ``v`` is for building objects; one read from the wire must state it.
        if "v" in cls.model_fields and "v" not in obj.model_fields_set:
            raise DecodeError(f"{cls._what}: v: Field required", code=cls._code)
        return obj


def _reason(exc: ValidationError) -> str:
    first = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg']}" if where else str(first["msg"])


def load(model: type[M], data: bytes | str, *, what: str, code: str = "decode_error") -> M:
    """Parse the JSON text ``data`` as ``model``; DecodeError(``code``) naming the first fault."""
    try:
        return model.model_validate_json(data, strict=True)
    except ValidationError as exc:
        raise DecodeError(f"{what}: {_reason(exc)}", code=code) from None


def load_value(model: type[M], value: Any, *, what: str, code: str = "decode_error") -> M:
    """As :func:`load`, for JSON already parsed (a request body FastAPI read)."""
    try:
        return model.model_validate(value, strict=True)
    except ValidationError as exc:
        raise DecodeError(f"{what}: {_reason(exc)}", code=code) from None
