"""Webhooks are signed per Standard Webhooks: the `standardwebhooks` library verifies them."""

from __future__ import annotations

import base64
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from alerting.render_webhook import webhook_body
from alerting.signing import InvalidSecret, parse_secrets, sign_headers
from tests.alerting.factories import crossing

NEW = "whsec_" + base64.b64encode(b"new-secret-0123456789abcdef").decode()
OLD = "whsec_" + base64.b64encode(b"old-secret-0123456789abcdef").decode()
OTHER = "whsec_" + base64.b64encode(b"someone-else-entirely").decode()


def _signed(secret_value: str) -> tuple[bytes, dict[str, str]]:
    c = crossing(95)
    body = webhook_body(c)
    return body, sign_headers(c.alert_id, int(time.time()), body, parse_secrets(secret_value))


def test_receiver_verifies_with_the_library() -> None:
    body, headers = _signed(NEW)
    assert headers["webhook-id"] == crossing(95).alert_id
    assert Webhook(NEW).verify(body, headers)["threshold"] == 95


def test_a_wrong_secret_or_a_changed_body_does_not_verify() -> None:
    body, headers = _signed(NEW)
    with pytest.raises(WebhookVerificationError):
        Webhook(OTHER).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(NEW).verify(body.replace(b"95", b"96"), headers)


def test_during_rotation_both_the_new_and_the_old_secret_verify() -> None:
    body, headers = _signed(f"{NEW} {OLD}")
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(NEW).verify(body, headers)
    assert Webhook(OLD).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(OTHER).verify(body, headers)


@pytest.mark.parametrize("value", ["", "s3cret", "whsec_not base64!", "whsec_",
                                   f"{NEW} {OLD} {OTHER}", f"{NEW} plain"])
def test_malformed_secrets_are_refused_without_echoing_them(value: str) -> None:
    with pytest.raises(InvalidSecret) as info:
        parse_secrets(value)
    assert "s3cret" not in str(info.value) and NEW not in str(info.value)
