"""Serializers and deserializers: bytes (default), str, json; None passes through; no pickle."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from logq.client.serde import (
    bytes_deserializer,
    bytes_serializer,
    get_deserializer,
    get_serializer,
    json_deserializer,
    json_serializer,
    str_deserializer,
    str_serializer,
)
from logq.errors import ConfigError, DeserializationError, LogqError, SerializationError


def test_bytes_serializer_passes_bytes_like_through() -> None:
    assert bytes_serializer(b"\x00ab") == b"\x00ab"
    assert bytes_serializer(bytearray(b"xy")) == b"xy"
    assert bytes_serializer(memoryview(b"xyz")[1:]) == b"yz"


@pytest.mark.parametrize("value,name", [("text", "str"), (12, "int"), ({"a": 1}, "dict"), (1.5, "float")])
def test_bytes_serializer_refuses_other_types_naming_the_type(value: object, name: str) -> None:
    with pytest.raises(SerializationError, match=rf"got {name}\b") as info:
        bytes_serializer(value)
    assert isinstance(info.value, LogqError) and info.value.hint


def test_default_serializer_is_bytes() -> None:
    assert get_serializer() is bytes_serializer
    assert get_deserializer(None) is bytes_deserializer


def test_none_is_a_null_key_or_tombstone_for_every_format() -> None:
    for name in ("bytes", "str", "json"):
        assert get_serializer(name)(None) is None
        assert get_deserializer(name)(None) is None


def test_str_serializer_is_utf8_and_refuses_non_str_and_lone_surrogates() -> None:
    assert str_serializer("héllo €") == "héllo €".encode()
    with pytest.raises(SerializationError, match="bytes"):
        str_serializer(b"raw")
    with pytest.raises(SerializationError, match="surrogate"):
        str_serializer("bad \udc80")


def test_str_deserializer_is_strict_utf8() -> None:
    assert str_deserializer("é".encode()) == "é"
    with pytest.raises(DeserializationError, match="UTF-8"):
        str_deserializer(b"\xff\xfe")


def test_json_serializer_is_compact_utf8() -> None:
    assert json_serializer({"a": [1, 2], "b": "é"}) == '{"a":[1,2],"b":"é"}'.encode()


@pytest.mark.parametrize("value", [math.nan, math.inf, {1, 2}, object(), b"bytes"])
def test_json_serializer_refuses_what_json_cannot_hold(value: object) -> None:
    with pytest.raises(SerializationError):
        json_serializer(value)


def test_json_deserializer_rejects_invalid_documents() -> None:
    assert json_deserializer(b"null") is None  # the JSON document null, not a tombstone
    with pytest.raises(DeserializationError, match="JSON"):
        json_deserializer(b"{not json")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(), kids, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_json_round_trips(value: object) -> None:
    assert json_deserializer(json_serializer(value)) == value


@given(st.text())
def test_str_round_trips(value: str) -> None:
    try:
        data = str_serializer(value)
    except SerializationError:
        return  # lone surrogates are refused, never mangled
    assert str_deserializer(data) == value


@pytest.mark.parametrize("name", ["pickle", "PICKLE", "marshal", "dill", "cloudpickle"])
def test_pickle_and_friends_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="refused"):
        get_serializer(name)
    with pytest.raises(ConfigError, match="refused"):
        get_deserializer(name)


def test_unknown_names_and_non_callables_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown"):
        get_serializer("yaml")
    with pytest.raises(ConfigError):
        get_deserializer(42)  # type: ignore[arg-type]


def test_callables_are_used_as_given() -> None:
    def upper(v: object) -> bytes:
        return str(v).upper().encode()

    assert get_serializer(upper) is upper
    assert get_serializer("json")([1]) == b"[1]"
    assert get_deserializer("str")(b"x") == "x"
