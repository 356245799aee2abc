"""ASGI routing: /v1/* to the gateway's consumers, everything else to Django."""

from channels.routing import ProtocolTypeRouter, URLRouter
from django.urls import re_path


def build_application(django_asgi_app):
    return ProtocolTypeRouter({"http": URLRouter([re_path(r"", django_asgi_app)])})
