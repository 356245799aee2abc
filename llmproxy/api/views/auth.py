from django.contrib.auth import authenticate
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle

from audit.services import audit_record
from llmproxy.api import scoping
from llmproxy.api.base import ApiView
from llmproxy.api.models import AccessToken
from llmproxy.api.tokens import access_token_issue, access_token_revoke


class LoginThrottle(SimpleRateThrottle):
    """Password guesses per client address (successful logins count too)."""

    rate = "10/min"
    scope = "api_token"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class TokenApi(ApiView):
    """POST: a token for a username and password (shown once). DELETE: revoke the token of this request."""

    class InputSerializer(serializers.Serializer):
        username = serializers.CharField(max_length=150)
        password = serializers.CharField(
            max_length=128, style={"input_type": "password"}, trim_whitespace=False
        )
        name = serializers.CharField(
            max_length=200, required=False, allow_blank=True, default="", help_text="What the token is for."
        )

    class OutputSerializer(serializers.Serializer):
        token = serializers.CharField(help_text="Send it as 'Authorization: Token ...'. Shown this once.")
        prefix = serializers.CharField()
        role = serializers.CharField()

    def get_authenticators(self):
        # Logging in takes no credentials but the password (and no session CSRF check).
        request = getattr(self, "request", None)  # None while drf-spectacular builds the schema
        return [] if request is not None and request.method == "POST" else super().get_authenticators()

    def get_permissions(self):
        return [AllowAny()] if self.request.method == "POST" else [IsAuthenticated()]

    def get_throttles(self):
        return [LoginThrottle()] if self.request.method == "POST" else []

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer}, auth=[])
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        user = authenticate(request, username=values["username"], password=values["password"])
        if user is None or scoping.role_of(user) is None:
            audit_record(
                action="security.api_login_failed",
                actor="anonymous",
                metadata={"username": values["username"]},
            )
            raise ValidationError("Unknown username or wrong password.", code="invalid_credentials")
        token, plain = access_token_issue(user=user, name=values["name"])
        body = {"token": plain, "prefix": token.prefix, "role": scoping.role_of(user)}
        return Response(self.OutputSerializer(body).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={204: None})
    def delete(self, request):
        if not isinstance(request.auth, AccessToken):
            raise ValidationError("This request was not made with a token.")
        access_token_revoke(token=request.auth, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
