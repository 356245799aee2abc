"""Provider kind -> adapter. One instance each: adapters hold no per-request state."""

from providers.adapters.anthropic import AnthropicAdapter
from providers.adapters.mock import MockAdapter
from providers.adapters.openai import AzureOpenAIAdapter, OpenAIAdapter

_ADAPTERS = {
    "openai": OpenAIAdapter(),
    "openai_compatible": OpenAIAdapter(),
    "ollama": OpenAIAdapter(),
    "azure": AzureOpenAIAdapter(),
    "anthropic": AnthropicAdapter(),
    "mock": MockAdapter(),
}


def register(kind, adapter):
    _ADAPTERS[kind] = adapter


def adapter_for(kind):
    return _ADAPTERS.get(kind)
