"""Alert e-mails, sent through a real SMTP server (aiosmtpd) on 127.0.0.1."""

from __future__ import annotations

import email.policy
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from typing import Any

import aiosmtplib
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from services.alerter.email import SmtpSettings, compose, send

EVENT: dict[str, Any] = {
    "id": "e-1",
    "action": "document.delete",
    "actor_id": "u_81",
    "actor_name": "<script>alert(1)</script>",
    "resource": "document",
    "resource_id": "doc-7",
    "occurred_at": "2026-11-27T02:12:03.000000Z",
    "ip_address": "203.0.113.9",
    "ip_country": "DE",
}
EVENT_URL = "https://chainlog.example/w/ws-1/events/e-1?from=alert&x=1"


def alert(**overrides: Any) -> EmailMessage:
    args: dict[str, Any] = {
        "sender": "Chainlog <alerts@chainlog.example>",
        "recipients": ["ops@acme.example", "Sec Team <sec@acme.example>"],
        "workspace_name": "Acme & Co",
        "rule_name": "Deletes at night",
        "rule_type": "off_hours",
        "reason": 'document.delete by "<b>alice</b>" at 03:12, outside 08:00–19:00',
        "event": EVENT,
        "event_url": EVENT_URL,
        "triggered_at": "2026-11-27T02:12:05.114000Z",
    }
    return compose(**(args | overrides))


@dataclass
class Inbox:
    envelopes: list[Envelope] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 OK"

    def only(self) -> tuple[Envelope, EmailMessage]:
        [envelope] = self.envelopes
        assert isinstance(envelope.content, bytes)
        parsed = message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return envelope, parsed


@dataclass
class Smtp:
    inbox: Inbox
    settings: SmtpSettings


def _free_port() -> int:
    # aiosmtpd's Controller checks readiness by connecting to its port, so it
    # needs a real number rather than 0.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _authenticate(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"chainlog", b"pw")
    return AuthResult(success=ok, handled=False)


def _server(**kwargs: Any) -> Iterator[Smtp]:
    inbox = Inbox()
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    settings = SmtpSettings(
        host="127.0.0.1",
        port=port,
        username=None,
        password=None,
        starttls=False,
        use_tls=False,
        sender="alerts@chainlog.example",
        timeout=10,
    )
    try:
        yield Smtp(inbox, settings)
    finally:
        controller.stop()


@pytest.fixture
def smtp() -> Iterator[Smtp]:
    yield from _server()


@pytest.fixture
def smtp_auth() -> Iterator[Smtp]:
    yield from _server(authenticator=_authenticate, auth_require_tls=False)


async def test_send_delivers_both_parts_to_the_recipients(smtp: Smtp) -> None:
    await send(smtp.settings, alert())
    envelope, msg = smtp.inbox.only()
    assert envelope.mail_from == "alerts@chainlog.example"
    assert sorted(envelope.rcpt_tos) == ["ops@acme.example", "sec@acme.example"]
    assert msg.get_content_type() == "multipart/alternative"
    assert msg["To"] == "ops@acme.example, Sec Team <sec@acme.example>"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Subject"] == (
        '[Chainlog] Deletes at night: document.delete by "<b>alice</b>" at 03:12,'
        " outside 08:00–19:00"
    )
    plain, html = msg.get_body(("plain",)), msg.get_body(("html",))
    assert isinstance(plain, EmailMessage) and isinstance(html, EmailMessage)
    text, markup = plain.get_content(), html.get_content()

    for expected in (
        'document.delete by "<b>alice</b>"',
        "Deletes at night (off_hours)",
        "<script>alert(1)</script> (u_81)",
        "document.delete",
        "document doc-7",
        "2026-11-27T02:12:03.000000Z",
        "203.0.113.9 (DE)",
        "2026-11-27T02:12:05.114000Z",
        f"View the event: {EVENT_URL}",
        'workspace "Acme & Co"',
    ):
        assert expected in text

    assert "<script>" not in markup and "<b>alice" not in markup
    for expected in (
        "&lt;script&gt;alert(1)&lt;/script&gt; (u_81)",
        "&quot;&lt;b&gt;alice&lt;/b&gt;&quot;",
        "Acme &amp; Co",
        "203.0.113.9 (DE)",
        "2026-11-27T02:12:03.000000Z",
        'href="https://chainlog.example/w/ws-1/events/e-1?from=alert&amp;x=1"',
    ):
        assert expected in markup


async def test_login_when_credentials_are_set(smtp_auth: Smtp) -> None:
    settings = smtp_auth.settings
    wrong = SmtpSettings(**{**_fields(settings), "username": "chainlog", "password": "nope"})
    with pytest.raises(aiosmtplib.SMTPAuthenticationError):
        await send(wrong, alert())
    right = SmtpSettings(**{**_fields(settings), "username": "chainlog", "password": "pw"})
    await send(right, alert())
    assert len(smtp_auth.inbox.envelopes) == 1


def _fields(settings: SmtpSettings) -> dict[str, Any]:
    return {name: getattr(settings, name) for name in SmtpSettings.__dataclass_fields__}


@pytest.mark.parametrize("sep", ["\r\n", "\n", "\r", "\u2028"])
async def test_rule_name_cannot_inject_a_header(smtp: Smtp, sep: str) -> None:
    message = alert(
        rule_name=f"Night{sep}Bcc: thief@evil.example",
        reason=f"why{sep}X-Injected: 1",
    )
    await send(smtp.settings, message)
    envelope, msg = smtp.inbox.only()
    assert sorted(envelope.rcpt_tos) == ["ops@acme.example", "sec@acme.example"]
    assert msg["Bcc"] is None and msg["X-Injected"] is None
    assert set(msg.keys()) == {
        "Subject",
        "From",
        "To",
        "Date",
        "Message-ID",
        "Auto-Submitted",
        "MIME-Version",
        "Content-Type",
    }
    assert msg["Subject"] == "[Chainlog] Night Bcc: thief@evil.example: why X-Injected: 1"


def test_subject_reason_is_truncated() -> None:
    msg = alert(reason="x" * 500)
    subject = str(msg["Subject"])
    assert subject.startswith("[Chainlog] Deletes at night: xxx")
    assert subject.endswith("…")
    assert len(subject) == len("[Chainlog] Deletes at night: ") + 120
    plain = msg.get_body(("plain",))
    assert isinstance(plain, EmailMessage)
    assert "x" * 500 in plain.get_content()  # the body keeps the whole reason


def test_absent_event_fields_are_left_out() -> None:
    msg = alert(event={"id": "e-2", "action": "user.login", "actor_id": "u_1"})
    plain = msg.get_body(("plain",))
    assert isinstance(plain, EmailMessage)
    text = plain.get_content()
    assert "Actor:" in text and "u_1" in text
    assert "IP address" not in text and "Resource" not in text and "None" not in text


@pytest.mark.parametrize(
    "overrides",
    [
        {"recipients": []},
        {"recipients": ["ops@acme.example\r\nBcc: thief@evil.example"]},
        {"recipients": ["ops@acme.example, thief@evil.example"]},
        {"recipients": ["not-an-address"]},
        {"sender": "alerts@chainlog.example\nBcc: thief@evil.example"},
        {"event_url": "javascript:alert(1)"},
        {"event_url": "https://chainlog.example/e\r\nX: y"},
    ],
)
def test_bad_addresses_and_links_are_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        alert(**overrides)


def test_settings_hide_the_password_and_refuse_two_tls_modes() -> None:
    settings = SmtpSettings("h", 587, "u", "hunter2", True, False, "a@b.example", 10)
    assert "hunter2" not in repr(settings)
    with pytest.raises(ValueError, match="not both"):
        SmtpSettings("h", 465, None, None, True, True, "a@b.example", 10)


async def test_send_to_nothing_raises() -> None:
    settings = SmtpSettings("127.0.0.1", _free_port(), None, None, False, False, "a@b.example", 5)
    with pytest.raises((aiosmtplib.SMTPException, OSError)):
        await send(settings, alert())
