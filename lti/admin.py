from __future__ import annotations

from django.contrib import admin
from django.db import models

from .models import Context, Deployment, Platform, PlatformUser, ResourceLink, ToolKey


class DeploymentInline(admin.TabularInline):
    model = Deployment
    extra = 1


@admin.register(Platform)
class PlatformAdmin(admin.ModelAdmin):
    list_display = ("__str__", "issuer", "client_id", "active", "created_at")
    list_filter = ("active",)
    search_fields = ("name", "issuer", "client_id")
    inlines = [DeploymentInline]
    # Platforms' URLs are https; a URL typed without a scheme means https too.
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}


@admin.register(ToolKey)
class ToolKeyAdmin(admin.ModelAdmin):
    """Read-only: keys are made and rotated by `manage.py lti_platform rotate-key`."""

    list_display = ("kid", "created_at", "superseded_at", "retired_at")
    readonly_fields = ("kid", "public_jwk", "created_at", "superseded_at", "retired_at")
    exclude = ("private_key_pem",)

    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False


@admin.register(Context)
class ContextAdmin(admin.ModelAdmin):
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    list_display = ("__str__", "platform", "context_id", "course")
    raw_id_fields = ("course",)


@admin.register(ResourceLink)
class ResourceLinkAdmin(admin.ModelAdmin):
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    list_display = ("__str__", "context", "assignment")
    raw_id_fields = ("assignment",)


@admin.register(PlatformUser)
class PlatformUserAdmin(admin.ModelAdmin):
    list_display = ("user", "platform", "sub")
    raw_id_fields = ("user",)
