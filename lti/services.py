"""What a validated launch does to Markwise: users, courses, enrolments and links. Audited."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from courses.models import Assignment, Course, Enrollment, Language, Role, User
from grading.audit import audit_record

from .models import Context, Deployment, Platform, PlatformUser, ResourceLink
from .protocol import CLAIM

LIS = "http://purl.imsglobal.org/vocab/lis/v2/"
AGS_CLAIM = "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint"
NRPS_CLAIM = "https://purl.imsglobal.org/spec/lti-nrps/claim/namesroleservice"
# Course (membership) roles only: institution roles say nothing about this course.
_ROLE_BY_NAME = {
    "Instructor": Role.TEACHER,
    "Administrator": Role.TEACHER,
    "ContentDeveloper": Role.TEACHER,
    "TeachingAssistant": Role.TA,
    "Learner": Role.STUDENT,
}
_RANK: dict[str, int] = {Role.TEACHER: 3, Role.TA: 2, Role.STUDENT: 1}


def role_from_claims(roles: list[str]) -> str | None:
    """The strongest course role among the LTI roles; None when none applies."""
    found: list[str] = []
    for uri in roles:
        if uri.startswith(LIS + "membership"):
            name = uri.rsplit("#", 1)[-1]
        elif ":" in uri or "/" in uri:
            continue  # institution or system role, or a vocabulary we do not know
        else:
            name = uri  # the short form (“Instructor”) NRPS and LTI 1.1 send
        role = _ROLE_BY_NAME.get(name)
        if role is not None:
            found.append(role)
    return max(found, key=lambda role: _RANK[role]) if found else None


@dataclass(frozen=True)
class LaunchResult:
    user: User
    course: Course
    role: str | None
    message_type: str
    resource_link: ResourceLink | None
    return_url: str
    language: str | None


def _username(platform: Platform, sub: str) -> str:
    digest = hashlib.sha256(f"{platform.issuer}\n{sub}".encode()).hexdigest()[:16]
    return f"lti-{platform.pk}-{digest}"


def language_from_claims(claims: dict[str, Any]) -> str | None:
    """Markwise's language for the LMS's locale (`zh-CN`, `zh_Hans`, `en-GB`...), if any."""
    presentation = claims.get(CLAIM + "launch_presentation") or {}
    locale = str(presentation.get("locale") or claims.get("locale") or "").lower()
    if locale.startswith("zh"):
        return Language.ZH_HANS
    if locale.startswith("en"):
        return Language.EN
    return None


def platform_user_sync(*, platform: Platform, sub: str, claims: dict[str, Any]) -> User:
    """The account for (issuer, sub): created on first sight, name and e-mail kept current."""
    name = str(
        claims.get("name")
        or " ".join(str(claims.get(part) or "") for part in ("given_name", "family_name"))
    ).strip()[:150]
    email = str(claims.get("email") or "")[:254]
    link = PlatformUser.objects.filter(platform=platform, sub=sub).select_related("user").first()
    if link is None:
        user = User.objects.create(
            username=_username(platform, sub),
            name=name,
            email=email,
            language=language_from_claims(claims) or "",
        )
        user.set_unusable_password()
        user.save(update_fields=["password"])
        link = PlatformUser.objects.create(platform=platform, sub=sub, user=user)
        audit_record(
            actor=None,
            action="lti.user.created",
            target=user,
            after={"platform": platform.pk, "sub": sub, "name": name, "email": email},
        )
        return user
    user = link.user
    changed = {
        field: value
        for field, value in (("name", name), ("email", email))
        if value and getattr(user, field) != value
    }
    if changed:
        for field, value in changed.items():
            setattr(user, field, value)
        user.save(update_fields=list(changed))
    return user


def context_sync(*, platform: Platform, deployment: Deployment, claims: dict[str, Any]) -> Context:
    """The course for this LTI context: linked on first launch (a new Markwise course)."""
    context_claim = claims.get(CLAIM + "context") or {}
    context_id = str(context_claim.get("id") or "")
    if not context_id:
        # A launch without a context (from a platform's admin area) has no course to open.
        raise ValueError("no context")
    title = str(context_claim.get("title") or context_claim.get("label") or context_id)[:200]
    nrps = claims.get(NRPS_CLAIM) or {}
    ags = claims.get(AGS_CLAIM) or {}
    context = Context.objects.filter(platform=platform, context_id=context_id).first()
    if context is None:
        digest = hashlib.sha256(f"{platform.pk}\n{context_id}".encode()).hexdigest()[:10]
        course = Course.objects.create(title=title, code=f"LTI-{platform.pk}-{digest}")
        context = Context.objects.create(
            platform=platform,
            deployment=deployment,
            context_id=context_id,
            title=title,
            course=course,
        )
        audit_record(
            actor=None,
            action="lti.course.linked",
            target=course,
            after={"platform": platform.pk, "context": context_id, "title": title},
        )
    updates = {
        "title": title,
        "memberships_url": str(nrps.get("context_memberships_url") or context.memberships_url),
        "lineitems_url": str(ags.get("lineitems") or context.lineitems_url),
        "ags_scopes": list(ags.get("scope") or context.ags_scopes),
    }
    if any(getattr(context, field) != value for field, value in updates.items()):
        for field, value in updates.items():
            setattr(context, field, value)
        context.save(update_fields=list(updates))
    return context


def enrollment_sync(*, course: Course, user: User, role: str | None, source: str) -> None:
    """Make the active enrolment match the platform's role. A changed role ends the old
    enrolment and starts a new one, so the history shows both; no role ends it."""
    current = Enrollment.objects.active().filter(course=course, user=user).first()
    if current is not None and current.role == role:
        return
    if current is not None:
        current.ended_at = timezone.now()
        current.save(update_fields=["ended_at"])
        audit_record(
            actor=None,
            action="lti.enrollment.ended",
            target=current,
            before={"user": user.username, "role": current.role},
            reason=source,
        )
    if role is not None:
        enrollment = Enrollment.objects.create(course=course, user=user, role=role)
        audit_record(
            actor=None,
            action="lti.enrollment.added",
            target=enrollment,
            after={"course": course.pk, "user": user.username, "role": role},
            reason=source,
        )


def resource_link_sync(*, context: Context, claims: dict[str, Any]) -> ResourceLink | None:
    link_claim = claims.get(CLAIM + "resource_link") or {}
    link_id = str(link_claim.get("id") or "")
    if not link_id:
        return None
    link, _created = ResourceLink.objects.get_or_create(
        context=context,
        resource_link_id=link_id,
        defaults={"title": str(link_claim.get("title") or "")[:255]},
    )
    updates: dict[str, Any] = {}
    lineitem = str((claims.get(AGS_CLAIM) or {}).get("lineitem") or "")
    if lineitem and lineitem != link.lineitem_url:
        updates["lineitem_url"] = lineitem
    if link.assignment_id is None:
        # A link made by deep linking (or copied with its course) names its assignment in
        # a custom parameter; accept it only inside the same course.
        custom = claims.get(CLAIM + "custom") or {}
        wanted = str(custom.get("markwise_assignment") or "")
        if wanted.isdigit():
            assignment = Assignment.objects.filter(pk=int(wanted), course=context.course).first()
            if assignment is not None:
                updates["assignment"] = assignment
    if updates:
        for field, value in updates.items():
            setattr(link, field, value)
        link.save(update_fields=list(updates))
    return link


def launch_apply(*, platform: Platform, claims: dict[str, Any]) -> LaunchResult:
    """Everything a validated launch changes, in one transaction."""
    deployment = Deployment.objects.get(
        platform=platform, deployment_id=claims[CLAIM + "deployment_id"]
    )
    with transaction.atomic():
        user = platform_user_sync(platform=platform, sub=str(claims["sub"]), claims=claims)
        context = context_sync(platform=platform, deployment=deployment, claims=claims)
        role = role_from_claims([str(r) for r in claims.get(CLAIM + "roles") or []])
        enrollment_sync(course=context.course, user=user, role=role, source="lti launch")
        link = resource_link_sync(context=context, claims=claims)
        message_type = str(claims.get(CLAIM + "message_type") or "")
        audit_record(
            actor=user,
            action="lti.launch",
            target=context.course,
            after={
                "platform": platform.pk,
                "message_type": message_type,
                "role": role,
                "resource_link": link.resource_link_id if link else None,
                "assignment": link.assignment_id if link else None,
            },
            assignment_id=link.assignment_id if link else None,
        )
    presentation = claims.get(CLAIM + "launch_presentation") or {}
    return LaunchResult(
        user=user,
        course=context.course,
        role=role,
        message_type=message_type,
        resource_link=link,
        return_url=str(presentation.get("return_url") or ""),
        language=language_from_claims(claims),
    )


def resource_link_attach(
    *, link: ResourceLink, assignment: Assignment, actor: User
) -> ResourceLink:
    """A teacher links an unlinked placement to an assignment of the same course."""
    if assignment.course_id != link.context.course_id:
        raise ValueError("the assignment belongs to another course")
    before = link.assignment_id
    link.assignment = assignment
    link.save(update_fields=["assignment"])
    audit_record(
        actor=actor,
        action="lti.link.attached",
        target=link,
        before={"assignment": before},
        after={"assignment": assignment.pk},
        assignment_id=assignment.pk,
    )
    return link


DEEP_LINKING_SETTINGS = "https://purl.imsglobal.org/spec/lti-dl/claim/deep_linking_settings"


def deep_link_response(
    *,
    platform: Platform,
    deployment_id: str,
    deep_link_settings: dict[str, Any],
    assignment: Assignment,
    launch_url: str,
    actor: User,
) -> str:
    """The signed LtiDeepLinkingResponse that places `assignment` in the platform course:
    an ltiResourceLink with a line item (the assignment's total, the assignment as
    resourceId) and a custom parameter, so the new link launches straight into it."""
    from pylti1p3.deep_link import DeepLink
    from pylti1p3.deep_link_resource import DeepLinkResource
    from pylti1p3.lineitem import LineItem

    from .passback import assignment_total
    from .protocol import registration_for

    lineitem = LineItem()
    lineitem.set_score_maximum(assignment_total(assignment) or 1)
    lineitem.set_label(assignment.title).set_resource_id(str(assignment.pk))
    resource = DeepLinkResource()
    resource.set_url(launch_url).set_title(assignment.title).set_lineitem(lineitem)
    resource.set_custom_params({"markwise_assignment": str(assignment.pk)})
    deep_link = DeepLink(registration_for(platform), deployment_id, deep_link_settings)  # type: ignore[arg-type]
    token: str = deep_link.get_response_jwt([resource])
    audit_record(
        actor=actor,
        action="lti.deep_link.returned",
        target=assignment,
        after={"platform": platform.pk, "deployment": deployment_id},
        assignment_id=assignment.pk,
    )
    return token
