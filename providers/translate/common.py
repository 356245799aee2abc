"""What both directions of the OpenAI <-> Anthropic translation share."""

import orjson


class TranslationError(ValueError):
    """A request the other format cannot express (the client's to fix: a 400)."""


def parse_data_url(url: str):
    """(media type, base64 data) of a ``data:<type>;base64,<data>`` URL, or None for any other URL."""
    if not url.startswith("data:"):
        return None
    header, sep, data = url[5:].partition(",")
    media_type, _, encoding = header.partition(";")
    if not sep or encoding != "base64" or not media_type:
        raise TranslationError("Only base64 data URLs are supported (data:<media type>;base64,<data>).")
    return media_type, data


def json_text(value) -> str:
    return orjson.dumps(value).decode()
