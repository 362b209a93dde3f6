"""Alert e-mails: compose a plain-text + HTML message, send it over SMTP.

Everything a workspace user controls (rule name, reason, the event's
fields) is untrusted here:

- in headers it is flattened to one line, so a rule named
  ``"x\\r\\nBcc: someone"`` cannot add a header or a recipient;
- in the HTML part it is escaped, so an actor name cannot inject markup
  or a link;
- addresses (sender, recipients) come from settings and rule
  configuration; a malformed one is refused with ``ValueError``.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from typing import Any

import aiosmtplib

from libs.common.settings import Settings

SUBJECT_REASON_MAX = 120
_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]+")
_SPACES = re.compile(r"\s{2,}")


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    host: str
    port: int
    username: str | None
    password: str | None = field(repr=False)
    starttls: bool
    use_tls: bool
    sender: str
    timeout: float

    def __post_init__(self) -> None:
        if self.starttls and self.use_tls:
            raise ValueError("SMTP: choose STARTTLS or implicit TLS, not both")

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpSettings:
        """The ``CHAINLOG_SMTP_*`` settings; an empty host means email is off."""
        return cls(
            host=settings.smtp_host or "",
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=settings.smtp_password,
            starttls=settings.smtp_starttls,
            use_tls=settings.smtp_tls,
            sender=settings.smtp_sender,
            timeout=float(settings.webhook_timeout_s),
        )


def _one_line(value: object) -> str:
    return _SPACES.sub(" ", _CONTROL.sub(" ", str(value))).strip()


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _address(value: str) -> Address:
    """One address, ``a@b`` or ``Name <a@b>``; anything else is ``ValueError``."""
    if _CONTROL.search(value) or "," in value:
        raise ValueError(f"not a single e-mail address: {value!r}")
    name, addr = parseaddr(value)
    local, at, domain = addr.rpartition("@")
    if not (local and at and domain):
        raise ValueError(f"not an e-mail address: {value!r}")
    return Address(display_name=name, addr_spec=addr)


def _facts(
    rule_name: str, rule_type: str, reason: str, event: Mapping[str, Any], triggered_at: str
) -> list[tuple[str, str]]:
    """(label, value) rows both parts show; absent event fields are left out."""
    actor = event.get("actor_name") or event.get("actor_id")
    if actor and event.get("actor_name") and event.get("actor_id"):
        actor = f"{event['actor_name']} ({event['actor_id']})"
    resource = " ".join(str(event[k]) for k in ("resource", "resource_id") if event.get(k))
    place = ", ".join(str(event[k]) for k in ("ip_city", "ip_country") if event.get(k))
    ip = event.get("ip_address")
    if ip and place:
        ip = f"{ip} ({place})"
    rows = [
        ("Reason", reason),
        ("Rule", f"{rule_name} ({rule_type})"),
        ("Actor", actor),
        ("Action", event.get("action")),
        ("Resource", resource),
        ("Occurred at", event.get("occurred_at")),
        ("IP address", ip or place),
        ("Alert raised at", triggered_at),
    ]
    return [(label, _one_line(value)) for label, value in rows if value]


def compose(
    *,
    sender: str,
    recipients: list[str],
    workspace_name: str,
    rule_name: str,
    rule_type: str,
    reason: str,
    event: dict[str, Any],
    event_url: str,
    triggered_at: str,
) -> EmailMessage:
    if not recipients:
        raise ValueError("an alert e-mail needs at least one recipient")
    if not event_url.startswith(("https://", "http://")) or _CONTROL.search(event_url):
        raise ValueError("event_url must be an absolute http(s) URL")
    sender_addr = _address(sender)
    to = [_address(r) for r in recipients]
    rows = _facts(rule_name, rule_type, reason, event, triggered_at)
    workspace = _one_line(workspace_name)

    msg = EmailMessage()
    msg["Subject"] = (
        f"[Chainlog] {_one_line(rule_name)}: {_truncate(_one_line(reason), SUBJECT_REASON_MAX)}"
    )
    msg["From"] = sender_addr
    msg["To"] = to
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = make_msgid(domain=sender_addr.domain)
    # RFC 3834: out-of-office robots must not answer an alert.
    msg["Auto-Submitted"] = "auto-generated"

    width = max(len(label) for label, _ in rows)
    text = [f'Chainlog alert in workspace "{workspace}"', ""]
    text += [f"{label + ':':<{width + 1}} {value}" for label, value in rows]
    text += ["", f"View the event: {event_url}", ""]
    msg.set_content("\n".join(text))

    e = html.escape
    cells = "".join(
        f'<tr><th align="left" style="padding:2px 12px 2px 0">{e(label)}</th>'
        f"<td>{e(value)}</td></tr>"
        for label, value in rows
    )
    body = (
        "<!doctype html><html><body>"
        f"<p>Chainlog alert in workspace <strong>{e(workspace)}</strong></p>"
        f"<table>{cells}</table>"
        f'<p><a href="{e(event_url, quote=True)}">View the event</a></p>'
        "</body></html>"
    )
    msg.add_alternative(body, subtype="html")
    return msg


async def send(settings: SmtpSettings, message: EmailMessage) -> None:
    """Deliver ``message`` to its To recipients.

    Raises ``aiosmtplib.SMTPException`` (a ``SMTPResponseException`` has the
    server's code: 4xx is worth a retry, 5xx is not) or ``OSError``.
    """
    await aiosmtplib.send(
        message,
        hostname=settings.host,
        port=settings.port,
        username=settings.username,
        password=settings.password,
        use_tls=settings.use_tls,
        start_tls=settings.starttls,
        timeout=settings.timeout,
    )
