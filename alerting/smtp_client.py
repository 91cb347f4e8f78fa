"""Sending one email over SMTP (stdlib ``smtplib`` in a worker thread).

STARTTLS and login follow the settings. The password is never part of a
result or a log line; SMTP replies are reduced to their code and text.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage

from alerting.retry import AttemptResult, classify_smtp
from groundwork.settings import Settings


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    starttls: bool
    username: str | None
    password: str | None
    sender: str
    timeout_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpConfig:
        return cls(host=settings.smtp_host, port=settings.smtp_port,
                   starttls=settings.smtp_starttls, username=settings.smtp_username,
                   password=(settings.smtp_password.get_secret_value()
                             if settings.smtp_password else None),
                   sender=settings.smtp_from, timeout_s=settings.delivery_timeout_s)


def _reply(exc: smtplib.SMTPResponseException) -> str:
    raw = exc.smtp_error
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return " ".join(text.split())[:200]


def send_blocking(config: SmtpConfig, message: EmailMessage,
                  recipients: Sequence[str]) -> AttemptResult:
    """Deliver ``message`` to ``recipients`` in one SMTP transaction."""
    try:
        with smtplib.SMTP(config.host, config.port, timeout=config.timeout_s) as client:
            client.ehlo()
            if config.starttls:
                client.starttls(context=ssl.create_default_context())
                client.ehlo()
            if config.username:
                client.login(config.username, config.password or "")
            refused = client.send_message(message, from_addr=config.sender,
                                          to_addrs=list(recipients))
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        reason = f"every recipient refused (SMTP {', '.join(map(str, sorted(set(codes))))})"
        if all(400 <= c < 500 for c in codes):
            return AttemptResult.retryable(reason)
        return AttemptResult.permanent(reason)
    except smtplib.SMTPResponseException as exc:
        return classify_smtp(exc.smtp_code, _reply(exc))
    except smtplib.SMTPNotSupportedError as exc:
        return AttemptResult.permanent(f"SMTP server does not support it: {exc}")
    except (smtplib.SMTPException, OSError) as exc:
        if isinstance(exc, TimeoutError):
            return AttemptResult.retryable("SMTP timed out")
        text = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        return AttemptResult.retryable(f"SMTP connection error: {text}")
    if refused:
        return AttemptResult.delivered(
            f"accepted for {len(recipients) - len(refused)} of {len(recipients)} owners; "
            f"refused: {', '.join(sorted(refused))}")
    return AttemptResult.delivered(f"accepted for {len(recipients)} owners")


async def send_email(config: SmtpConfig, message: EmailMessage,
                     recipients: Sequence[str]) -> AttemptResult:
    return await asyncio.to_thread(send_blocking, config, message, recipients)
