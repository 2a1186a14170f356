"""LTI endpoints: OIDC login, launch, JWKS, and the pages a launch lands on.

Views stay thin: pylti1p3 (lti/protocol.py) validates, lti/services.py applies."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods
from django_q.tasks import async_task
from pylti1p3.exception import LtiException, OIDCException

from courses import permissions
from courses.http import parse_id
from courses.models import Role

from . import keys
from .models import Passback, Platform, ResourceLink
from .passback import passback_retry
from .protocol import CLAIM, DatabaseToolConf, MarkwiseLaunch, MarkwiseLogin
from .services import (
    DEEP_LINKING_SETTINGS,
    LaunchResult,
    deep_link_response,
    launch_apply,
    resource_link_attach,
)

FRAME_ORIGINS_KEY = "lti_frame_origins"
DEEP_LINK_KEY = "lti_deep_link"


def _refused(request: HttpRequest, message: str, *, status: int = 400) -> HttpResponse:
    return render(request, "lti/error.html", {"message": message}, status=status)


@require_GET
def jwks(request: HttpRequest) -> JsonResponse:
    return JsonResponse(keys.jwks())


@csrf_exempt  # the platform posts here cross-site; the login carries no session to protect
@never_cache
@require_http_methods(["GET", "POST"])
def oidc_login(request: HttpRequest) -> HttpResponse:
    params = request.POST if request.method == "POST" else request.GET
    issuer = params.get("iss", "")
    platform = DatabaseToolConf().platform(issuer, params.get("client_id") or None)
    if platform is None:
        return _refused(request, _("This learning platform is not registered with Markwise."))
    try:
        response: HttpResponse = MarkwiseLogin(request, platform).redirect(
            request.build_absolute_uri(reverse("lti:launch"))
        )
    except (OIDCException, LtiException):
        return _refused(request, _("The platform's login request was incomplete."))
    return response


def _with_error(return_url: str, message: str) -> str:
    parts = urlsplit(return_url)
    query = [*parse_qsl(parts.query), ("lti_errormsg", message)]
    return urlunsplit(parts._replace(query=urlencode(query)))


@csrf_exempt  # cross-site POST from the platform; the signed id_token is the proof
@never_cache
@require_http_methods(["POST"])
def launch(request: HttpRequest) -> HttpResponse:
    message_launch = MarkwiseLaunch(request)
    try:
        claims: dict[str, Any] = dict(message_launch.get_launch_data())
        state = message_launch.consume()
    except LtiException:
        # The reason (bad signature, replay, unknown deployment...) goes to the log via the
        # exception chain only; the page says what the person can do about it.
        return _refused(
            request,
            _("This launch could not be verified. Open Markwise again from your course."),
        )
    platform = state.platform
    if platform.issuer != claims.get("iss") or platform.client_id != message_launch.get_client_id():
        return _refused(
            request, _("This launch could not be verified. Open Markwise again from your course.")
        )
    try:
        result = launch_apply(platform=platform, claims=claims)
    except ValueError:
        message = _("Markwise can only be opened from inside a course.")
        return_url = str(
            (claims.get("https://purl.imsglobal.org/spec/lti/claim/launch_presentation") or {}).get(
                "return_url"
            )
            or ""
        )
        if return_url.startswith("https://"):
            return HttpResponseRedirect(_with_error(return_url, message))
        return _refused(request, message)
    login(request, result.user, backend="django.contrib.auth.backends.ModelBackend")
    request.session[FRAME_ORIGINS_KEY] = platform.allowed_frame_origins()
    if result.message_type == "LtiDeepLinkingRequest":
        if result.role not in (Role.TEACHER, Role.TA):
            return _refused(request, _("Only teachers can add Markwise to a course."), status=403)
        request.session[DEEP_LINK_KEY] = {
            "platform": platform.pk,
            "deployment_id": str(claims.get(CLAIM + "deployment_id") or ""),
            "settings": claims.get(DEEP_LINKING_SETTINGS) or {},
            "course": result.course.pk,
        }
        return _in_language(redirect("lti:deep_link"), result.language)
    return _in_language(redirect(_landing(result)), result.language)


def _in_language(response: HttpResponse, language: str | None) -> HttpResponse:
    """Pages after a launch speak the LMS's language (LocaleMiddleware reads this cookie)."""
    if language:
        response.set_cookie(
            settings.LANGUAGE_COOKIE_NAME,
            language,
            secure=settings.SESSION_COOKIE_SECURE,
            samesite="None" if settings.SESSION_COOKIE_SECURE else "Lax",
            httponly=True,
        )
    return response


def _landing(result: LaunchResult) -> str:
    link = result.resource_link
    if link is None or link.assignment_id is None:
        if link is not None:
            return reverse("lti:link", args=[link.pk])
        return (
            reverse("teach:course", args=[result.course.pk])
            if result.role
            in (
                Role.TEACHER,
                Role.TA,
            )
            else reverse("home")
        )
    if result.role in (Role.TEACHER, Role.TA):
        return reverse("grading:assignment", args=[link.assignment_id])
    assert link.assignment is not None
    if link.assignment.grades_released:
        return reverse("assignment_feedback", args=[link.assignment_id])
    return reverse("assignment_work", args=[link.assignment_id])


@require_http_methods(["GET", "POST"])
def resource_link(request: HttpRequest, pk: int) -> HttpResponse:
    """An unlinked placement: teachers link an assignment, students wait for them."""
    link = get_object_or_404(ResourceLink.objects.select_related("context__course"), pk=pk)
    course = link.context.course
    teaching = permissions.can_teach(request.user, course)  # type: ignore[arg-type]
    if not teaching and not permissions.can_study(request.user, course):  # type: ignore[arg-type]
        raise PermissionDenied
    if link.assignment_id is not None:
        return redirect("grading:assignment" if teaching else "assignment_work", link.assignment_id)
    if not teaching:
        return render(request, "lti/not_ready.html", {"course": course, "link": link})
    assignments = course.assignments.order_by("-created_at")
    if request.method == "POST":
        assignment_id = parse_id(request.POST.get("assignment"))
        assignment = assignments.filter(pk=assignment_id).first() if assignment_id else None
        if assignment is None:
            return render(
                request,
                "lti/link.html",
                {
                    "course": course,
                    "link": link,
                    "assignments": assignments,
                    "error": _("Choose an assignment of this course."),
                },
                status=400,
            )
        resource_link_attach(link=link, assignment=assignment, actor=request.user)  # type: ignore[arg-type]
        return redirect("grading:assignment", assignment.pk)
    return render(
        request, "lti/link.html", {"course": course, "link": link, "assignments": assignments}
    )


@require_GET
def passback_status(request: HttpRequest, pk: int) -> HttpResponse:
    """Per student: what the LMS gradebook was sent, what is pending, what failed and why."""
    assignment = get_object_or_404(
        permissions.teachable_assignments(request.user),  # type: ignore[arg-type]
        pk=pk,
    )
    rows = (
        Passback.objects.filter(resource_link__assignment=assignment)
        .select_related("student", "resource_link__context__platform")
        .order_by("student__username", "resource_link_id")
    )
    return render(request, "lti/passback.html", {"assignment": assignment, "rows": rows})


@require_http_methods(["POST"])
def passback_retry_view(request: HttpRequest, pk: int) -> HttpResponse:
    row = get_object_or_404(
        Passback.objects.select_related("resource_link"),
        pk=pk,
        resource_link__assignment__in=permissions.teachable_assignments(request.user),  # type: ignore[arg-type]
    )
    passback_retry(passback=row, actor=request.user)  # type: ignore[arg-type]
    messages.success(request, _("The grade will be sent again."))
    return redirect("lti:passback", row.resource_link.assignment_id)


@require_http_methods(["GET", "POST"])
def deep_link(request: HttpRequest) -> HttpResponse:
    """A teacher picks the assignment the new platform link opens (deep linking)."""
    pending = request.session.get(DEEP_LINK_KEY)
    if not pending:
        return _refused(request, _("Open this page from your course's “add activity” menu."))
    course = get_object_or_404(
        permissions.teaching_courses(request.user),  # type: ignore[arg-type]
        pk=pending["course"],
    )
    assignments = course.assignments.order_by("-created_at")
    if request.method == "GET":
        return render(request, "lti/deep_link.html", {"course": course, "assignments": assignments})
    assignment_id = parse_id(request.POST.get("assignment"))
    assignment = assignments.filter(pk=assignment_id).first() if assignment_id else None
    if assignment is None:
        return render(
            request,
            "lti/deep_link.html",
            {
                "course": course,
                "assignments": assignments,
                "error": _("Choose an assignment of this course."),
            },
            status=400,
        )
    platform = get_object_or_404(Platform, pk=pending["platform"], active=True)
    token = deep_link_response(
        platform=platform,
        deployment_id=pending["deployment_id"],
        deep_link_settings=pending["settings"],
        assignment=assignment,
        launch_url=request.build_absolute_uri(reverse("lti:launch")),
        actor=request.user,  # type: ignore[arg-type]
    )
    del request.session[DEEP_LINK_KEY]  # one response per deep-linking request
    return_url = str(pending["settings"].get("deep_link_return_url") or "")
    response = render(
        request,
        "lti/deep_link_return.html",
        {"return_url": return_url, "jwt": token, "assignment": assignment},
    )
    origin = _origin_of(return_url)
    if origin:
        # CSP's form-action is 'self'; this one form posts to the platform that asked.
        response._csp_update = {"form-action": [origin]}  # type: ignore[attr-defined]
    return response


def _origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.netloc:
        return f"{parts.scheme}://{parts.netloc}"
    return None


@require_http_methods(["POST"])
def roster_sync(request: HttpRequest, pk: int) -> HttpResponse:
    """The course page's "sync roster" button: the sync runs as a task (it calls the LMS)."""
    course = get_object_or_404(
        permissions.teaching_courses(request.user),  # type: ignore[arg-type]
        pk=pk,
    )
    contexts = list(course.lti_contexts.exclude(memberships_url="").values_list("pk", flat=True))
    if not contexts:
        messages.error(request, _("This course is not linked to a learning platform's roster."))
    else:
        for context_id in contexts:
            async_task("lti.tasks.roster_sync", context_id, request.user.pk)
        messages.success(
            request,
            _("The roster is being synced from the learning platform; reload in a minute."),
        )
    return redirect("teach:course", course.pk)
