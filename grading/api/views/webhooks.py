"""Webhook subscriptions of a course and their delivery log (`grading.webhooks`).

The course's teachers only — never an API key, so that a key cannot send a course's
events somewhere new. The signing secret is in the response that creates a subscription,
and never again.
"""

from __future__ import annotations

from typing import Any

import django_filters
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from courses import permissions
from courses.models import Course

from ... import webhooks
from ...models import (
    WEBHOOK_TEST_EVENT,
    DeliveryStatus,
    WebhookDelivery,
    WebhookEvent,
    WebhookSubscription,
)
from ..base import ApiView
from ..pagination import EventCursorPagination
from ..serializers import TextField

_TEACHERS_ONLY = _("Only the course's teachers manage its webhooks.")

# --- Serializers --------------------------------------------------------------------------


class WebhookSubscriptionSerializer(serializers.ModelSerializer):
    event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=WebhookEvent.choices),
        help_text="The events delivered to this URL.",
    )

    class Meta:
        model = WebhookSubscription
        fields = ["id", "course", "url", "description", "event_types", "active", "created_at"]
        read_only_fields = fields


class WebhookSubscriptionCreatedSerializer(WebhookSubscriptionSerializer):
    secret = serializers.CharField(
        read_only=True,
        help_text=(
            "The signing secret (`whsec_` and base64). Shown in this response only: keep it "
            "where the receiver can read it."
        ),
    )

    class Meta(WebhookSubscriptionSerializer.Meta):
        fields = [*WebhookSubscriptionSerializer.Meta.fields, "secret"]
        read_only_fields = fields


class WebhookSubscriptionCreateSerializer(serializers.Serializer):
    url = TextField(
        max_length=500,
        help_text=(
            "The receiver: `https://` on a public address (the server refuses loopback and "
            "private networks)."
        ),
    )
    event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=WebhookEvent.choices),
        min_length=1,
        max_length=len(WebhookEvent.choices),
        help_text="The events to deliver there.",
    )
    description = TextField(max_length=200, required=False, allow_blank=True, default="")


class WebhookAttemptSerializer(serializers.Serializer):
    at = serializers.DateTimeField(help_text="When the attempt started.")
    code = serializers.IntegerField(
        allow_null=True, help_text="The receiver's HTTP status; null when it did not answer."
    )
    error = serializers.CharField(help_text="Why the attempt failed; empty on success.")
    ms = serializers.IntegerField(help_text="How long it took, in milliseconds.")


class WebhookDeliverySerializer(serializers.ModelSerializer):
    history = WebhookAttemptSerializer(many=True, read_only=True)
    payload = serializers.JSONField(read_only=True, help_text="The body sent, as JSON.")

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "subscription",
            "event_id",
            "event_type",
            "status",
            "attempts",
            "last_response_code",
            "last_error",
            "next_attempt_at",
            "last_attempt_at",
            "created_at",
            "history",
            "payload",
        ]
        read_only_fields = fields


class WebhookDeliveryFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=DeliveryStatus.choices)
    event_type = django_filters.ChoiceFilter(
        choices=[*WebhookEvent.choices, (WEBHOOK_TEST_EVENT, WEBHOOK_TEST_EVENT)]
    )

    class Meta:
        model = WebhookDelivery
        fields = ["status", "event_type"]


# --- Examples ---------------------------------------------------------------------------------

_SUBSCRIPTION = {
    "id": 7,
    "course": 3,
    "url": "https://sis.school.example/markwise/events",
    "description": "学籍系统",
    "event_types": ["grades.released", "grading.finished"],
    "active": True,
    "created_at": "2026-09-01T08:00:00+08:00",
}
_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwC8D1w3E0kQ0="
_DELIVERY = {
    "id": 311,
    "subscription": 7,
    "event_id": "evt_5b3c0e1f9a7d4c2b8e6f1a0d3c9b7e54",
    "event_type": "grades.released",
    "status": "succeeded",
    "attempts": 2,
    "last_response_code": 200,
    "last_error": "",
    "next_attempt_at": None,
    "last_attempt_at": "2026-11-02T17:05:31+08:00",
    "created_at": "2026-11-02T17:05:00+08:00",
    "history": [
        {"at": "2026-11-02T17:05:00+08:00", "code": 503, "error": "HTTP 503", "ms": 120},
        {"at": "2026-11-02T17:05:31+08:00", "code": 200, "error": "", "ms": 85},
    ],
    "payload": {
        "id": "evt_5b3c0e1f9a7d4c2b8e6f1a0d3c9b7e54",
        "type": "grades.released",
        "timestamp": "2026-11-02T09:05:00.123Z",
        "data": {
            "course": {"id": 3, "code": "CHN-8A", "title": "八年级语文"},
            "assignment": {"id": 42, "title": "期中作文"},
            "released_at": "2026-11-02T09:05:00.101Z",
        },
    },
}
SUBSCRIPTION_PAGE = OpenApiExample(
    "Subscriptions",
    value={"count": 1, "next": None, "previous": None, "results": [_SUBSCRIPTION]},
    response_only=True,
    status_codes=["200"],
)
SUBSCRIPTION = OpenApiExample(
    "A subscription", value=_SUBSCRIPTION, response_only=True, status_codes=["200"]
)
SUBSCRIPTION_CREATE = OpenApiExample(
    "Subscribe",
    value={
        "url": "https://sis.school.example/markwise/events",
        "event_types": ["grades.released", "grading.finished"],
        "description": "学籍系统",
    },
    request_only=True,
)
SUBSCRIPTION_CREATED = OpenApiExample(
    "The subscription, with its secret",
    value={**_SUBSCRIPTION, "secret": _SECRET},
    response_only=True,
    status_codes=["201"],
)
DELIVERY_PAGE = OpenApiExample(
    "Deliveries",
    value={
        "next": "https://grading.school.example/api/v1/webhooks/7/deliveries/?cursor=cD0yMDI2",
        "previous": None,
        "results": [_DELIVERY],
    },
    response_only=True,
    status_codes=["200"],
)
TEST_DELIVERY = OpenApiExample(
    "The test delivery, queued",
    value={
        **_DELIVERY,
        "event_id": "evt_0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f",
        "event_type": WEBHOOK_TEST_EVENT,
        "status": "pending",
        "attempts": 0,
        "last_response_code": None,
        "next_attempt_at": "2026-11-02T17:10:00+08:00",
        "last_attempt_at": None,
        "created_at": "2026-11-02T17:10:00+08:00",
        "history": [],
        "payload": {
            "id": "evt_0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f",
            "type": WEBHOOK_TEST_EVENT,
            "timestamp": "2026-11-02T09:10:00.012Z",
            "data": {
                "course": {"id": 3, "code": "CHN-8A", "title": "八年级语文"},
                "subscription": 7,
                "message": "This is a test event from Markwise.",
            },
        },
    },
    response_only=True,
    status_codes=["202"],
)

# --- Views --------------------------------------------------------------------------------------


class WebhookScoped(ApiView):
    def course(self, pk: int) -> Course:
        course = get_object_or_404(permissions.api_courses(self.user, self.key), pk=pk)
        self.require(
            permissions.api_can_manage_webhooks(self.user, self.key, course), _TEACHERS_ONLY
        )
        return course

    def subscription(self, pk: int) -> WebhookSubscription:
        subscription: WebhookSubscription = get_object_or_404(
            WebhookSubscription.objects.select_related("course").filter(
                course__in=permissions.api_courses(self.user, self.key)
            ),
            pk=pk,
        )
        self.require(
            permissions.api_can_manage_webhooks(self.user, self.key, subscription.course),
            _TEACHERS_ONLY,
        )
        return subscription


class CourseWebhookList(WebhookScoped):
    serializer_class = WebhookSubscriptionSerializer
    ordering_fields = ["created_at", "id"]
    ordering = ["-created_at", "-id"]

    @extend_schema(
        operation_id="webhooks_list",
        tags=["webhooks"],
        summary="List a course's webhook subscriptions",
        description=(
            "The receivers of the course's events (README: Webhooks), without their "
            "secrets. The course's teachers only; API keys cannot manage webhooks."
        ),
        examples=[SUBSCRIPTION_PAGE],
    )
    def get(self, request: Request, pk: int) -> Response:
        course = self.course(pk)
        subscriptions = self.filter_queryset(WebhookSubscription.objects.filter(course=course))
        page = self.paginate_queryset(subscriptions)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(
        operation_id="webhooks_create",
        tags=["webhooks"],
        summary="Subscribe a URL to a course's events",
        description=(
            "Events of the course (`grading.finished`, `grade.needs_review`, "
            "`grades.released`, `regrade.requested`) are POSTed to `url`, signed following "
            "Standard Webhooks with the `secret` returned here — the only time it is shown. "
            "The URL must be `https://` on a public address. Audited. The course's teachers "
            "only."
        ),
        request=WebhookSubscriptionCreateSerializer,
        responses={201: WebhookSubscriptionCreatedSerializer},
        examples=[SUBSCRIPTION_CREATE, SUBSCRIPTION_CREATED],
    )
    def post(self, request: Request, pk: int) -> Response:
        course = self.course(pk)
        data = self.validated(WebhookSubscriptionCreateSerializer)
        subscription = webhooks.webhook_subscription_create(
            course=course,
            url=data["url"],
            event_types=data["event_types"],
            description=data["description"],
            actor=self.user,
        )
        return Response(
            WebhookSubscriptionCreatedSerializer(subscription).data,
            status=status.HTTP_201_CREATED,
        )


class WebhookDetail(WebhookScoped):
    serializer_class = WebhookSubscriptionSerializer

    @extend_schema(
        operation_id="webhooks_retrieve",
        tags=["webhooks"],
        summary="Get a webhook subscription",
        description="One subscription, without its secret. The course's teachers only.",
        examples=[SUBSCRIPTION],
    )
    def get(self, request: Request, pk: int) -> Response:
        return Response(self.get_serializer(self.subscription(pk)).data)

    @extend_schema(
        operation_id="webhooks_destroy",
        tags=["webhooks"],
        summary="Unsubscribe",
        description=(
            "Nothing more is sent to the URL; the subscription's delivery log goes with it. "
            "Audited. The course's teachers only."
        ),
        responses={204: None},
    )
    def delete(self, request: Request, pk: int) -> Response:
        webhooks.webhook_subscription_delete(subscription=self.subscription(pk), actor=self.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookTest(WebhookScoped):
    serializer_class = WebhookDeliverySerializer

    @extend_schema(
        operation_id="webhooks_test",
        tags=["webhooks"],
        summary="Send a test event",
        description=(
            "Queues a signed `webhook.test` event to the subscription's URL, whatever events "
            "it chose, and returns its delivery; read the delivery log to see what the "
            "receiver answered. The course's teachers only."
        ),
        request=None,
        responses={202: WebhookDeliverySerializer},
        examples=[TEST_DELIVERY],
    )
    def post(self, request: Request, pk: int) -> Response:
        delivery = webhooks.webhook_test_send(subscription=self.subscription(pk))
        return Response(self.get_serializer(delivery).data, status=status.HTTP_202_ACCEPTED)


class WebhookDeliveryList(WebhookScoped):
    serializer_class = WebhookDeliverySerializer
    filterset_class = WebhookDeliveryFilter
    pagination_class = EventCursorPagination

    @extend_schema(
        operation_id="webhook_deliveries_list",
        tags=["webhooks"],
        summary="Read a subscription's delivery log",
        description=(
            "Every event sent to the subscription, newest first: its payload, status "
            "(`pending` while retries remain, `succeeded`, `failed`), attempts and each "
            "attempt's response code or error. Filter by `status` and `event_type`; follow "
            "`next` (a cursor) to page back. The course's teachers only."
        ),
        examples=[DELIVERY_PAGE],
    )
    def get(self, request: Request, pk: int) -> Response:
        subscription = self.subscription(pk)
        deliveries: Any = self.filter_queryset(subscription.deliveries.all())
        page = self.paginate_queryset(deliveries)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)
