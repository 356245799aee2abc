"""Serializer fields the API's views share."""

import json
import math

from rest_framework import serializers

MAX_JSON_BYTES = 64 * 1024


def _check_strings(value, path="value"):
    # Neither PostgreSQL (text, jsonb) nor the JSON encoder takes these; refuse
    # them here rather than fail in the database.
    if isinstance(value, str):
        if "\x00" in value:
            raise serializers.ValidationError(f"{path} contains a NUL character.")
        if any(0xD800 <= ord(ch) <= 0xDFFF for ch in value):
            raise serializers.ValidationError(f"{path} contains a lone surrogate character.")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_strings(key, path)
            _check_strings(item, f"{path}.{key}")
    elif isinstance(value, list):
        for item in value:
            _check_strings(item, path)


class ModelNamesField(serializers.ListField):
    """Public model names; empty means all. Duplicates are dropped, order kept."""

    def __init__(self, **kwargs):
        kwargs.setdefault(
            "child", serializers.CharField(max_length=200, allow_blank=False, trim_whitespace=True)
        )
        kwargs.setdefault("max_length", 500)
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        return list(dict.fromkeys(super().to_internal_value(data)))


class JSONObjectField(serializers.JSONField):
    """A JSON object of bounded size (provider options, extra headers)."""

    def __init__(self, *, string_values=False, **kwargs):
        self.string_values = string_values
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not isinstance(value, dict):
            raise serializers.ValidationError("Give a JSON object.")
        if self.string_values and not all(isinstance(v, str) for v in value.values()):
            raise serializers.ValidationError("Every value must be a string.")
        _check_strings(value)
        if len(json.dumps(value)) > MAX_JSON_BYTES:
            raise serializers.ValidationError(f"At most {MAX_JSON_BYTES} bytes.")
        return value


class FiniteFloatField(serializers.FloatField):
    """A float that is a number: "nan" and "inf" (accepted by float()) are refused."""

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not math.isfinite(value):
            self.fail("invalid")
        return value
