from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from llmproxy.api.base import ApiView, ScopedDetailApi, ScopedListApi, ScopedRelatedField
from llmproxy.api.pagination import Pages
from llmproxy.api.scoping import ADMIN, TENANT_ADMIN, USER
from tenants.models import Tenant, User

FIELDS = ("username", "email", "first_name", "last_name", "role", "tenant", "is_active")
AUDITED = (*FIELDS, "password")


class UserOutput(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ("id", *FIELDS, "last_login", "date_joined")
        read_only_fields = fields


class UserInput(serializers.ModelSerializer):
    tenant = ScopedRelatedField(Tenant, required=False, allow_null=True)
    password = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        max_length=128,
        style={"input_type": "password"},
        help_text="Without one, the account cannot log in (an empty string removes it).",
    )

    class Meta:
        model = User
        fields = (*FIELDS, "password")


def _apply(view, user, data, *, creating):
    """Set the validated fields on ``user`` under the caller's role rules; the caller saves."""
    caller = view.request.user
    if data.get("role") == ADMIN and not view.is_platform_admin:
        raise PermissionDenied("Only a platform admin can make platform admins.")
    # Nobody promotes, demotes or locks out themselves (a platform admin neither: ask another one).
    changes_own_access = ("role" in data and data["role"] != user.role) or data.get("is_active") is False
    if not creating and user.pk == caller.pk and changes_own_access:
        raise PermissionDenied("You cannot change your own role or deactivate yourself.")
    password = data.pop("password", None)
    for field, value in data.items():
        setattr(user, field, value)
    if not view.is_platform_admin:
        user.tenant_id = caller.tenant_id  # a tenant admin's users stay in their tenant
    if user.role == ADMIN and user.tenant_id is not None:
        raise ValidationError({"tenant": "A platform admin belongs to no tenant."})
    if password:
        password_validation.validate_password(password, user)
        user.set_password(password)
    elif password == "" or creating:
        user.set_unusable_password()


class UserListApi(ScopedListApi):
    model = User
    pagination_class = Pages
    ordering = ("username",)
    audited_fields = AUDITED

    class OutputSerializer(UserOutput):
        pass

    class InputSerializer(UserInput):
        pass

    def base_queryset(self):
        return User.objects.select_related("tenant")

    def apply_change(self, user, values):
        _apply(self, user, values, creating=True)


class UserDetailApi(ScopedDetailApi):
    model = User
    audited_fields = AUDITED

    class OutputSerializer(UserOutput):
        pass

    class InputSerializer(UserInput):
        pass

    def apply_change(self, user, values):
        _apply(self, user, values, creating=False)

    def check_delete(self, user):
        if user.pk == self.request.user.pk:
            raise PermissionDenied("You cannot delete yourself.")


class MeApi(ApiView):
    read_roles = (ADMIN, TENANT_ADMIN, USER)

    class OutputSerializer(UserOutput):
        pass

    @extend_schema(responses=OutputSerializer)
    def get(self, request):
        return Response(self.OutputSerializer(request.user).data)
