"""A small LTI 1.3 platform on loopback for the tests: real RSA keys, a JWKS endpoint,
OIDC authorisation (signing id_tokens), and a client-credentials token endpoint that
verifies the tool's signed client assertion against the tool's JWKS."""

from __future__ import annotations

import html
import io
import json
import secrets
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.management import call_command
from jwt.algorithms import RSAAlgorithm

CLAIM = "https://purl.imsglobal.org/spec/lti/claim/"
LIS = "http://purl.imsglobal.org/vocab/lis/v2/membership#"


class LoopbackPlatform:
    def __init__(self) -> None:
        self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "platform-key-1"
        self.client_id = "markwise-client"
        self.deployment_id = "deployment-1"
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.platform = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.issuer = self.url
        self.tool_jwks_url = ""  # set by the test once the tool's live server is known
        self.tool_jwks: dict[str, Any] | None = None  # or the JWKS itself
        self.tokens_issued: list[dict[str, Any]] = []
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.lineitems: list[dict[str, Any]] = []
        self.members: list[dict[str, Any]] = []
        self.fail_next = 0  # answer this many service calls with a 503
        # Claims for the id_token the /auth page signs (a browser's launch), by login_hint.
        self.browser_claims: dict[str, dict[str, Any]] = {}
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- Registration values --------------------------------------------------------
    @property
    def auth_url(self) -> str:
        return self.url + "/auth"

    @property
    def token_url(self) -> str:
        return self.url + "/token"

    @property
    def keyset_url(self) -> str:
        return self.url + "/jwks"

    def jwks(self) -> dict[str, Any]:
        jwk = json.loads(RSAAlgorithm.to_jwk(self.private_key.public_key()))
        jwk.update({"kid": self.kid, "alg": "RS256", "use": "sig"})
        return {"keys": [jwk]}

    def authorised(self, header: str) -> bool:
        issued = {t["token"] for t in self.tokens_issued}
        return header.startswith("Bearer ") and header.removeprefix("Bearer ") in issued

    def verify_tool_jwt(self, token: str) -> dict[str, Any]:
        """What a platform does with a deep-linking response: check it against the tool's
        JWKS (by kid), with the platform as audience and the client id as issuer."""
        header = jwt.get_unverified_header(token)
        jwk = next(k for k in (self.tool_jwks or {"keys": []})["keys"] if k["kid"] == header["kid"])
        return jwt.decode(
            token,
            RSAAlgorithm.from_jwk(json.dumps(jwk)),  # type: ignore[arg-type]
            algorithms=["RS256"],
            audience=self.issuer,
            issuer=self.client_id,
        )

    def scores(self) -> list[dict[str, Any]]:
        return [body for path, body in self.received if path.endswith("/scores")]

    # --- Launches -------------------------------------------------------------------
    def id_token(
        self,
        *,
        nonce: str,
        sub: str = "user-1",
        roles: tuple[str, ...] = (LIS + "Learner",),
        context_id: str = "course-101",
        resource_link_id: str = "link-1",
        message_type: str = "LtiResourceLinkRequest",
        custom: dict[str, str] | None = None,
        lineitem: str | None = None,
        overrides: dict[str, Any] | None = None,
        key: rsa.RSAPrivateKey | None = None,
        locale: str = "en-US",
    ) -> str:
        now = int(time.time())
        body: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.client_id,
            "sub": sub,
            "iat": now,
            "exp": now + 300,
            "nonce": nonce,
            "name": f"Name of {sub}",
            "email": f"{sub}@school.example",
            CLAIM + "message_type": message_type,
            CLAIM + "version": "1.3.0",
            CLAIM + "deployment_id": self.deployment_id,
            CLAIM + "target_link_uri": "https://tool.example/lti/launch/",
            CLAIM + "roles": list(roles),
            CLAIM + "context": {"id": context_id, "title": "Chinese 101", "label": "CN101"},
            CLAIM + "launch_presentation": {
                "return_url": "https://lms.example/return",
                "locale": locale,
            },
        }
        if message_type == "LtiResourceLinkRequest":
            body[CLAIM + "resource_link"] = {"id": resource_link_id, "title": "Essay"}
        if custom:
            body[CLAIM + "custom"] = custom
        ags: dict[str, Any] = {
            "scope": [
                "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem",
                "https://purl.imsglobal.org/spec/lti-ags/scope/score",
            ],
            "lineitems": self.url + "/lineitems",
        }
        if lineitem:
            ags["lineitem"] = lineitem
        body["https://purl.imsglobal.org/spec/lti-ags/claim/endpoint"] = ags
        body["https://purl.imsglobal.org/spec/lti-nrps/claim/namesroleservice"] = {
            "context_memberships_url": self.url + "/memberships",
            "service_versions": ["2.0"],
        }
        body.update(overrides or {})
        return jwt.encode(
            body, key or self.private_key, algorithm="RS256", headers={"kid": self.kid}
        )


class _Handler(BaseHTTPRequestHandler):
    server: Any

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        return None

    def _json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        platform: LoopbackPlatform = self.server.platform
        path = urlsplit(self.path).path
        if path == "/jwks":
            self._json(200, platform.jwks())
        elif path == "/auth":
            self._authorise(platform)
        elif not platform.authorised(self.headers.get("Authorization", "")):
            self._json(401, {"error": "invalid_token"})
        elif path == "/lineitems":
            self._json(200, platform.lineitems)
        elif path == "/memberships":
            self._json(200, {"id": platform.url + "/memberships", "members": platform.members})
        else:
            self._json(404, {"error": "not found"})

    def _authorise(self, platform: LoopbackPlatform) -> None:
        """The OIDC authorisation endpoint a browser is redirected to: what an LMS answers,
        a page that posts the signed id_token and the state to the tool's redirect_uri."""
        query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
        claims = platform.browser_claims.get(query.get("login_hint", ""))
        if claims is None:
            self._json(403, {"error": "login_required"})
            return
        token = platform.id_token(nonce=query["nonce"], **claims)
        data = (
            "<!doctype html><title>LMS</title>"
            f'<form method="post" action="{html.escape(query["redirect_uri"])}">'
            f'<input type="hidden" name="id_token" value="{html.escape(token)}">'
            f'<input type="hidden" name="state" value="{html.escape(query["state"])}">'
            "</form><script>document.forms[0].submit()</script>"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        platform: LoopbackPlatform = self.server.platform
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode()
        path = urlsplit(self.path).path
        if path == "/token":
            form = {k: v[0] for k, v in parse_qs(raw).items()}
            assertion = form.get("client_assertion", "")
            try:
                header = jwt.get_unverified_header(assertion)
                jwks = platform.tool_jwks or {"keys": []}
                jwk = next(k for k in jwks["keys"] if k["kid"] == header.get("kid"))
                claims = jwt.decode(
                    assertion,
                    RSAAlgorithm.from_jwk(json.dumps(jwk)),  # type: ignore[arg-type]
                    algorithms=["RS256"],
                    audience=platform.token_url,
                    issuer=platform.client_id,
                )
            except (StopIteration, jwt.InvalidTokenError) as exc:
                self._json(401, {"error": "invalid_client", "error_description": str(exc)})
                return
            token = secrets.token_urlsafe(16)
            platform.tokens_issued.append({"token": token, "scope": form.get("scope"), **claims})
            self._json(200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600})
            return
        if not platform.authorised(self.headers.get("Authorization", "")):
            self._json(401, {"error": "invalid_token"})
            return
        if platform.fail_next:
            platform.fail_next -= 1
            self._json(503, {"error": "platform busy"})
            return
        body = json.loads(raw or "{}")
        platform.received.append((path, body))
        if path == "/lineitems":
            item = {**body, "id": f"{platform.url}/lineitems/{len(platform.lineitems) + 1}"}
            platform.lineitems.append(item)
            self._json(201, item)
            return
        self._json(200, {})


# --- The tool side of a launch, as a browser inside the LMS would do it ----------------


def registered_platform() -> Iterator[LoopbackPlatform]:
    """A running platform registered with the tool (as `lti_platform add` does); for a
    fixture to yield from."""
    platform = LoopbackPlatform()
    call_command(
        "lti_platform",
        "add",
        "--issuer",
        platform.issuer,
        "--client-id",
        platform.client_id,
        "--deployment-id",
        platform.deployment_id,
        "--auth-url",
        platform.auth_url,
        "--token-url",
        platform.token_url,
        "--keyset-url",
        platform.keyset_url,
        stdout=io.StringIO(),
    )
    yield platform
    platform.close()


def login_via_oidc(client, lms: LoopbackPlatform) -> dict[str, str]:
    response = client.get(
        "/lti/login/",
        {
            "iss": lms.issuer,
            "client_id": lms.client_id,
            "login_hint": "u1",
            "target_link_uri": "http://testserver/lti/launch/",
            "lti_message_hint": "m",
        },
    )
    assert response.status_code == 302
    assert response["Location"].startswith(lms.auth_url)
    query = {k: v[0] for k, v in parse_qs(urlsplit(response["Location"]).query).items()}
    assert query["redirect_uri"] == "http://testserver/lti/launch/"
    assert query["client_id"] == lms.client_id
    return query


def launch_via_oidc(client, lms: LoopbackPlatform, **claims):
    query = login_via_oidc(client, lms)
    token = lms.id_token(nonce=query["nonce"], **claims)
    return client.post("/lti/launch/", {"id_token": token, "state": query["state"]}), token, query
