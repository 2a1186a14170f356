"""LTI 1.3 registrations and the links between platform identities and Markwise rows.

A platform's context, user and resource link are *linked to* a Course, a User and an
Assignment; the courses and grading apps never learn about LTI.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.netloc:
        return f"{parts.scheme}://{parts.netloc}"
    return None


class Platform(models.Model):
    """An LMS registration: one (issuer, client id) pair, as the platform's admin created it."""

    name = models.CharField(_("name"), max_length=100, blank=True)
    issuer = models.URLField(_("issuer"), max_length=255)
    client_id = models.CharField(_("client ID"), max_length=255)
    auth_login_url = models.URLField(_("authentication (OIDC) URL"), max_length=500)
    auth_token_url = models.URLField(_("access token URL"), max_length=500)
    auth_audience = models.CharField(
        _("token audience"),
        max_length=500,
        blank=True,
        help_text=_(
            "Leave empty unless the platform asks for an audience other than the token URL."
        ),
    )
    keyset_url = models.URLField(_("public keyset URL"), max_length=500)
    frame_origins = models.CharField(
        _("extra frame origins"),
        max_length=500,
        blank=True,
        help_text=_(
            "Origins (https://school.example) that may show Markwise in a frame, besides the "
            "issuer's and the authentication URL's, separated by spaces. Canvas: your Canvas site."
        ),
    )
    active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("LTI platform")
        verbose_name_plural = _("LTI platforms")
        constraints = [
            models.UniqueConstraint(fields=["issuer", "client_id"], name="lti_platform_unique"),
        ]

    def __str__(self) -> str:
        return self.name or f"{self.issuer} · {self.client_id}"

    def allowed_frame_origins(self) -> list[str]:
        """Where an LTI-launched page may be framed: this platform's registered origins only."""
        origins = [_origin(self.issuer), _origin(self.auth_login_url)]
        origins += [_origin(value) for value in self.frame_origins.split()]
        return sorted({origin for origin in origins if origin})


class Deployment(models.Model):
    platform = models.ForeignKey(Platform, on_delete=models.CASCADE, related_name="deployments")
    deployment_id = models.CharField(_("deployment ID"), max_length=255)

    class Meta:
        verbose_name = _("LTI deployment")
        verbose_name_plural = _("LTI deployments")
        constraints = [
            models.UniqueConstraint(
                fields=["platform", "deployment_id"], name="lti_deployment_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.platform} · {self.deployment_id}"


class ToolKeyQuerySet(models.QuerySet["ToolKey"]):
    def published(self) -> ToolKeyQuerySet:
        return self.filter(retired_at__isnull=True)


class ToolKey(models.Model):
    """The tool's RSA key pair. The newest unsuperseded key signs; a superseded key stays
    in the JWKS until retired, so platforms that cached it still verify in-flight tokens."""

    kid = models.CharField(_("key ID"), max_length=64, unique=True)
    private_key_pem = models.TextField(_("private key"))
    public_jwk = models.JSONField(_("public key (JWK)"))
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    superseded_at = models.DateTimeField(_("superseded"), null=True, blank=True)
    retired_at = models.DateTimeField(_("retired"), null=True, blank=True)

    objects = ToolKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("tool key")
        verbose_name_plural = _("tool keys")

    def __str__(self) -> str:
        return self.kid


class LaunchState(models.Model):
    """One OIDC login: its state and nonce, consumed by exactly one launch.

    Kept in the database so every web worker sees the same record and a replayed
    id_token + state finds it already used."""

    state = models.CharField(max_length=100, unique=True)
    nonce = models.CharField(max_length=100)
    platform = models.ForeignKey(Platform, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["expires_at"])]

    def __str__(self) -> str:
        return self.state


class PlatformUser(models.Model):
    """A platform's user (issuer + sub) linked to a Markwise account."""

    platform = models.ForeignKey(Platform, on_delete=models.CASCADE, related_name="users")
    sub = models.CharField(max_length=255)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="lti_identities"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("LTI user")
        verbose_name_plural = _("LTI users")
        constraints = [
            models.UniqueConstraint(fields=["platform", "sub"], name="lti_user_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.user} · {self.sub}"


class Context(models.Model):
    """A platform course (context) linked to a Markwise course."""

    platform = models.ForeignKey(Platform, on_delete=models.CASCADE, related_name="contexts")
    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="+")
    context_id = models.CharField(max_length=255)
    title = models.CharField(max_length=255, blank=True)
    course = models.ForeignKey(
        "courses.Course", on_delete=models.CASCADE, related_name="lti_contexts"
    )
    memberships_url = models.URLField(max_length=500, blank=True)
    lineitems_url = models.URLField(max_length=500, blank=True)
    ags_scopes = models.JSONField(default=list, blank=True)

    class Meta:
        verbose_name = _("LTI context")
        verbose_name_plural = _("LTI contexts")
        constraints = [
            models.UniqueConstraint(fields=["platform", "context_id"], name="lti_context_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.title or self.context_id} → {self.course.code}"


class ResourceLink(models.Model):
    """A placement of Markwise in a platform course, linked to one assignment once chosen."""

    context = models.ForeignKey(Context, on_delete=models.CASCADE, related_name="resource_links")
    resource_link_id = models.CharField(max_length=255)
    title = models.CharField(max_length=255, blank=True)
    assignment = models.ForeignKey(
        "courses.Assignment",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="lti_resource_links",
    )
    lineitem_url = models.URLField(max_length=500, blank=True)

    class Meta:
        verbose_name = _("LTI resource link")
        verbose_name_plural = _("LTI resource links")
        constraints = [
            models.UniqueConstraint(
                fields=["context", "resource_link_id"], name="lti_resource_link_unique"
            ),
        ]

    def __str__(self) -> str:
        return self.title or self.resource_link_id


class PassbackStatus(models.TextChoices):
    QUEUED = "queued", _("Pending")
    SENT = "sent", _("Sent")
    FAILED = "failed", _("Failed")


class Passback(models.Model):
    """The LMS gradebook's copy of one student's result for one placement.

    The task sends whatever is true when it runs (pending before release, the score after),
    so a repeat or a late retry never sends a stale score."""

    resource_link = models.ForeignKey(
        ResourceLink, on_delete=models.CASCADE, related_name="passbacks"
    )
    student = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="lti_passbacks"
    )
    status = models.CharField(
        _("status"), max_length=10, choices=PassbackStatus.choices, default=PassbackStatus.QUEUED
    )
    sent_score = models.JSONField(_("last score sent"), null=True, blank=True)
    message = models.TextField(_("platform's message"), blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("grade passback")
        verbose_name_plural = _("grade passbacks")
        constraints = [
            models.UniqueConstraint(
                fields=["resource_link", "student"], name="lti_passback_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.resource_link} · {self.student} · {self.status}"
