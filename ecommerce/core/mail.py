"""Sending mail: SMTP when MAIL_SERVER is set, otherwise .eml files in a folder of instance/.

The folder transport exists so that the embedded default (no mail server) still lets a user
read what the shop sent: every message is one RFC 5322 file, openable by any mail client.
"""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from pathlib import Path

from flask import current_app


class MailUnavailable(Exception):
    """The mail server could not take the message now; sending it again later may work."""


def send_message(message: EmailMessage) -> None:
    config = current_app.config
    if not message["From"]:
        message["From"] = config["MAIL_SENDER"]
    if config.get("MAIL_SERVER"):
        _send_smtp(message, config)
    else:
        _write_to_folder(message, Path(config["MAIL_FOLDER"]))


def _send_smtp(message: EmailMessage, config) -> None:
    try:
        with smtplib.SMTP(config["MAIL_SERVER"], config["MAIL_PORT"], timeout=config["MAIL_TIMEOUT"]) as smtp:
            if config.get("MAIL_USE_STARTTLS"):
                smtp.starttls()
            if config.get("MAIL_USERNAME"):
                smtp.login(config["MAIL_USERNAME"], config.get("MAIL_PASSWORD") or "")
            smtp.send_message(message)
    except (OSError, smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError) as exc:
        raise MailUnavailable(str(exc)) from exc
    except smtplib.SMTPResponseException as exc:
        if 400 <= exc.smtp_code < 500:  # a temporary refusal: try again later
            raise MailUnavailable(f"{exc.smtp_code} {exc.smtp_error!r}") from exc
        raise


def _write_to_folder(message: EmailMessage, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    # The Message-ID names the file, so writing the same message twice leaves one file.
    name = (message["Message-ID"] or "message").strip("<>").replace("/", "_").replace("@", "_at_")
    target = folder / f"{name}.eml"
    partial = target.with_suffix(".eml.partial")
    partial.write_bytes(bytes(message))
    partial.replace(target)
