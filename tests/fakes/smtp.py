"""A fake mail relay, and the customer side of email.

``FakeSMTPServer`` is a real aiosmtpd SMTP server on a free loopback port (on the running
loop) that records every message it is handed and can be told to refuse the next ones with a
given reply code. ``compose*`` build the raw mails customers (and their autoresponders) send;
``deliver`` hands one to Promptly's listener over real SMTP, as a customer's MTA would.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

import aiosmtplib
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from tests.fakes.base import Call, FakePlatform

SUPPORT = "support@example.com"
CUSTOMER = "alice@example.org"
CUSTOMER_NAME = "Alice Example"


@dataclass
class ReceivedMail:
    """One message the fake relay accepted."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    raw: bytes


@dataclass
class _Refusal:
    code: int
    message: str
    stage: str  # "rcpt" or "data"

    @property
    def reply(self) -> str:
        return f"{self.code} {self.message}"


class FakeSMTPServer(FakePlatform):
    """``calls`` records every DATA attempt (method "DATA", path "/<first recipient>", the
    mail's headers and raw bytes); ``messages`` the ones accepted. ``fail_next(451)`` makes
    the next transaction end with 451 at DATA (``stage="rcpt"`` refuses the recipient).
    ``credentials=(user, password)`` offers AUTH LOGIN/PLAIN without TLS and checks them
    (``logins`` records who got in); mail without AUTH is still accepted."""

    def __init__(self, *, credentials: tuple[str, str] | None = None) -> None:
        super().__init__()
        self.messages: list[ReceivedMail] = []
        self.logins: list[str] = []
        self.host = "127.0.0.1"
        self.port = 0
        self._credentials = credentials
        self._refusals: list[_Refusal] = []
        self._server: asyncio.Server | None = None
        self._sessions: list[SMTP] = []

    def fail_next(self, status: int, times: int = 1, **kwargs: Any) -> None:
        message = str(kwargs.get("message") or ("Try again later" if status < 500 else "No"))
        stage = str(kwargs.get("stage") or "data")
        if stage not in ("rcpt", "data"):
            raise ValueError("stage must be 'rcpt' or 'data'")
        self._refusals.extend(_Refusal(status, message, stage) for _ in range(times))

    async def start(self) -> FakeSMTPServer:
        loop = asyncio.get_running_loop()

        def protocol() -> SMTP:
            smtp = SMTP(
                self,
                hostname="fake-smtp.test",
                enable_SMTPUTF8=True,
                authenticator=self._authenticate if self._credentials else None,
                auth_require_tls=False,  # advertised without TLS; not required (aiosmtpd warns)
                loop=loop,
            )
            self._sessions.append(smtp)
            return smtp

        self._server = await loop.create_server(protocol, self.host, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        self.url = f"smtp://{self.host}:{self.port}"
        return self

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for smtp in self._sessions:
            if smtp.transport is not None:
                smtp.transport.close()
        await server.wait_closed()

    async def __aenter__(self) -> FakeSMTPServer:
        return await self.start()

    def _authenticate(
        self, server: SMTP, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword) and self._credentials is not None:
            login, password = auth_data.login.decode(), auth_data.password.decode()
            if (login, password) == self._credentials:
                self.logins.append(login)
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    # aiosmtpd handler hooks ("Handler hooks" in the aiosmtpd docs)

    async def handle_RCPT(  # noqa: N802
        self, server: SMTP, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if self._refusals and self._refusals[0].stage == "rcpt":
            return self._refusals.pop(0).reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:  # noqa: N802
        raw = bytes(envelope.original_content or envelope.content or b"")
        message = email.message_from_bytes(raw, policy=email.policy.default)
        first = envelope.rcpt_tos[0] if envelope.rcpt_tos else ""
        headers = {key: str(value) for key, value in message.items()}
        self.calls.append(Call("DATA", f"/{first}", headers, raw))
        self.changed.set()
        if self._refusals and self._refusals[0].stage == "data":
            return self._refusals.pop(0).reply
        self.messages.append(
            ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), message, raw)
        )
        return f"250 OK queued as {len(self.messages)}"


# -- what customers send ------------------------------------------------------------------------


def compose(
    *,
    text: str | None = "Hello, my order #1234 has not arrived yet.",
    html: str | None = None,
    sender: str = CUSTOMER,
    name: str | None = CUSTOMER_NAME,
    to: str = SUPPORT,
    subject: str | None = "Where is my order?",
    message_id: str | None = "",
    in_reply_to: str | None = None,
    references: str | None = None,
    headers: Mapping[str, str] | None = None,
    attachments: Sequence[tuple[str, str, bytes]] = (),
) -> bytes:
    """A raw customer mail (CRLF line ends, as on the wire). ``message_id=""`` makes a fresh
    one, ``None`` leaves it out; ``attachments`` are (filename, mime type, bytes); ``text=None``
    with ``html`` gives an HTML-only mail."""
    message = EmailMessage()
    message["From"] = Address(display_name=name or "", addr_spec=sender)
    message["To"] = to
    if subject is not None:
        message["Subject"] = subject
    message["Date"] = formatdate(usegmt=True)
    if message_id is not None:
        message["Message-ID"] = message_id or make_msgid(domain=sender.partition("@")[2])
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
    if references:
        message["References"] = references
    for key, value in (headers or {}).items():
        message[key] = value
    if text is not None:
        message.set_content(text)
        if html is not None:
            message.add_alternative(html, subtype="html")
    elif html is not None:
        message.set_content(html, subtype="html")
    for filename, mime, data in attachments:
        maintype, _, subtype = mime.partition("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return message.as_bytes(policy=email.policy.SMTP)


def reply_body(new: str, original: str, style: str = "gmail") -> str:
    """A customer's answer above (or around) the quoted history, as mail clients write it:
    "gmail" (attribution line then '>' lines), "wrapped" (attribution over two lines),
    "outlook" (-----Original Message----- then headers), "inline" ('>' lines between the new
    ones), "signature" (a "-- " signature, no quote)."""
    quoted = "\n".join(f"> {line}" for line in original.splitlines())
    if style == "gmail":
        return (
            f"{new}\n\nOn Mon, 2 Mar 2026 at 10:02, Promptly Support <{SUPPORT}> wrote:\n{quoted}\n"
        )
    if style == "wrapped":
        attribution = f"On Mon, 2 Mar 2026 at 10:02, Promptly Support\n<{SUPPORT}> wrote:"
        return f"{new}\n\n{attribution}\n\n{quoted}\n"
    if style == "outlook":
        return (
            f"{new}\n\n-----Original Message-----\nFrom: Promptly Support <{SUPPORT}>\n"
            f"Sent: Monday, March 2, 2026 10:02 AM\nSubject: Your order\n\n{original}\n"
        )
    if style == "inline":
        return f"{quoted}\n{new}\n> Anything else?\nNo, thanks.\n"
    if style == "signature":
        return f"{new}\n\n-- \nAlice Example\nACME Corp, +44 20 7946 0000\n"
    raise ValueError(f"unknown reply style {style!r}")


# Each way a machine says it wrote a mail (RFC 3834 and common practice): compose() arguments.
AUTO_REPLIES: Mapping[str, Mapping[str, Any]] = {
    "auto-submitted: auto-replied": {"headers": {"Auto-Submitted": "auto-replied"}},
    "auto-submitted: auto-generated": {"headers": {"Auto-Submitted": "auto-generated"}},
    "precedence: bulk": {"headers": {"Precedence": "bulk"}},
    "precedence: junk": {"headers": {"Precedence": "junk"}},
    "precedence: list": {"headers": {"Precedence": "list"}},
    "precedence: auto_reply": {"headers": {"Precedence": "auto_reply"}},
    "x-autoreply": {"headers": {"X-Autoreply": "yes"}},
    "x-autorespond": {"headers": {"X-Autorespond": "Out of office"}},
    "list-id": {"headers": {"List-Id": "Announcements <news.example.org>"}},
    "mailer-daemon": {"sender": "MAILER-DAEMON@mx.example.org", "name": "Mail Delivery System"},
    "postmaster": {"sender": "postmaster@example.org", "name": None},
    "no-reply": {"sender": "no-reply@shop.example.org", "name": "Shop"},
    "support address": {"sender": SUPPORT, "name": "Promptly Support"},
}


def compose_auto_reply(case: str, **overrides: Any) -> bytes:
    """An out-of-office, bounce, list mail or our own mail coming back: see ``AUTO_REPLIES``."""
    arguments: dict[str, Any] = {
        "subject": "Automatic reply: Where is my order?",
        "text": "I am out of the office until Monday.",
        **AUTO_REPLIES[case],
        **overrides,
    }
    return compose(**arguments)


async def deliver(
    host: str, port: int, raw: bytes, mail_from: str = CUSTOMER, rcpt_to: str = SUPPORT
) -> tuple[int, str]:
    """Hand ``raw`` to an SMTP server as the customer's MTA would; the server's last reply
    (250 accepted, 451 try later, 550 refused...) instead of an exception."""
    client = aiosmtplib.SMTP(
        hostname=host, port=port, start_tls=False, local_hostname="mx.example.org", timeout=10
    )
    async with client:
        try:
            await client.mail(mail_from)
            await client.rcpt(rcpt_to)
            response = await client.data(raw)
        except aiosmtplib.SMTPResponseException as e:
            return e.code, e.message
    return response.code, response.message
