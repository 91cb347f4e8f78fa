"""The owner email of a crossing: plain text and HTML alternatives (pure)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from email.message import EmailMessage
from html import escape

from alerting.facts import AlertFacts, facts_of
from streams.core.quotas import ThresholdCrossing as Crossing

ALERT_ID_HEADER = "X-Meter-Alert-Id"


def email_subject(facts: AlertFacts) -> str:
    return f"[meter] {facts.title}"


def email_text(facts: AlertFacts, alert_id: str) -> str:
    if facts.forecast is not None:
        return _forecast_text(facts, alert_id)
    state = "has reached" if facts.reached else f"has crossed {facts.threshold} % of"
    return "\n".join([
        f"{facts.quota_label} in workspace {facts.workspace_id} {state} its limit.",
        "",
        f"Quota:       {facts.quota}",
        f"Threshold:   {facts.threshold} %",
        f"Usage:       {facts.current} of {facts.limit} ({facts.percent} %)",
        f"Cycle ends:  {facts.cycle_ends}",
        *_what_to_do(facts, alert_id),
    ])


def _what_to_do(facts: AlertFacts, alert_id: str) -> list[str]:
    """The end of a threshold or forecast email: what 100 % means, what to do, the id."""
    return [
        "",
        f"At 100 %: {facts.at_limit}",
        "",
        "What you can do:",
        f"- {facts.reduce}",
        f"- {facts.raise_limit}",
        "",
        f"Alert id: {alert_id}",
        "",
    ]


def _forecast_text(facts: AlertFacts, alert_id: str) -> str:
    return "\n".join([
        f"{facts.forecast}",
        "",
        f"Workspace:   {facts.workspace_id}",
        f"Quota:       {facts.quota}",
        f"Usage:       {facts.current} of {facts.limit} ({facts.percent} %) so far",
        f"Cycle ends:  {facts.cycle_ends}",
        *_what_to_do(facts, alert_id),
    ])


def email_html(facts: AlertFacts, alert_id: str) -> str:
    state = "has reached" if facts.reached else f"has crossed {facts.threshold}&nbsp;% of"
    rows = [("Quota", facts.quota), ("Threshold", f"{facts.threshold} %"),
            ("Usage", f"{facts.current} of {facts.limit} ({facts.percent} %)"),
            ("Cycle ends", facts.cycle_ends)]
    lead = (f"{escape(facts.quota_label)} in workspace <b>{escape(facts.workspace_id)}</b> "
            f"{state} its limit.")
    if facts.forecast is not None:
        rows[1] = ("Forecast", f"100 % on {facts.forecast_day}")
        lead = escape(facts.forecast)
    table = "".join(
        f"<tr><th align=\"left\">{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    return (
        "<!doctype html><html><body>"
        f"<h2>{escape(facts.title)}</h2>"
        f"<p>{lead}</p>"
        f"<table>{table}</table>"
        f"<p><b>At 100&nbsp;%:</b> {escape(facts.at_limit)}</p>"
        "<p><b>What you can do:</b></p>"
        f"<ul><li>{escape(facts.reduce)}</li><li>{escape(facts.raise_limit)}</li></ul>"
        f"<p style=\"color:#666\">Alert id: {escape(alert_id)}</p>"
        "</body></html>"
    )


def message_id(alert_id: str, sender: str) -> str:
    """The Message-ID of an alert's email: the same every time the alert is rendered.

    A crash after the send and before its outcome was recorded sends the email again
    (DESIGN.md's one crash window); with the same Message-ID, mail systems and clients
    that dedupe by it show one message, as a webhook receiver dedupes by ``webhook-id``.
    """
    domain = sender.rpartition("@")[2] or "localhost"
    digest = hashlib.sha256(alert_id.encode()).hexdigest()[:32]
    return f"<alert.{digest}@{domain}>"


def render_email(crossing: Crossing, owners: Sequence[str], sender: str, *,
                 prune_target_ratio: float = 0.9) -> EmailMessage:
    """One message to every owner, with the alert id in a header and a Message-ID derived
    from it, for deduplication."""
    facts = facts_of(crossing, prune_target_ratio=prune_target_ratio)
    message = EmailMessage()
    message["Subject"] = email_subject(facts)
    message["From"] = sender
    message["To"] = ", ".join(owners)
    message["Message-ID"] = message_id(crossing.alert_id, sender)
    message[ALERT_ID_HEADER] = crossing.alert_id
    message.set_content(email_text(facts, crossing.alert_id))
    message.add_alternative(email_html(facts, crossing.alert_id), subtype="html")
    return message
