"""ASGI routing: /v1/* to the gateway's consumers, everything else to Django's handler."""

from channels.routing import ProtocolTypeRouter, URLRouter
from django.urls import path, re_path

from llmproxy.gateway.consumers import NotFoundConsumer
from llmproxy.gateway.lifespan import lifespan
from llmproxy.gateway.messages_api import CountTokensConsumer, MessagesConsumer
from llmproxy.gateway.models_api import ModelDetailConsumer, ModelsConsumer
from llmproxy.gateway.proxy import ChatCompletionsConsumer, CompletionsConsumer, EmbeddingsConsumer


def v1_routes():
    return [
        path("v1/chat/completions", ChatCompletionsConsumer.as_asgi()),
        path("v1/completions", CompletionsConsumer.as_asgi()),
        path("v1/embeddings", EmbeddingsConsumer.as_asgi()),
        path("v1/messages", MessagesConsumer.as_asgi()),
        path("v1/messages/count_tokens", CountTokensConsumer.as_asgi()),
        path("v1/models", ModelsConsumer.as_asgi()),
        re_path(r"^v1/models/(?P<model_id>.+)$", ModelDetailConsumer.as_asgi()),
        re_path(r"^v1/", NotFoundConsumer.as_asgi()),
    ]


def build_application(django_asgi_app):
    return ProtocolTypeRouter(
        {"http": URLRouter([*v1_routes(), re_path(r"", django_asgi_app)]), "lifespan": lifespan}
    )
