"""Decisions from the check API (``GET /v1/workspaces/{id}/quotas``, bearer token).

Never raises: every failure becomes ``Decisions.unavailable`` with a reason a person
can act on. The token is sent, never logged or shown.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from dashboard.quotas import Decisions, parse_quotas_answer
from groundwork.settings import Settings

log = logging.getLogger(__name__)


class CheckApi:
    def __init__(self, base_url: str, token: SecretStr | None, timeout_s: float = 2.0) -> None:
        self.base_url = base_url
        self._token = token
        self._http = httpx.Client(base_url=base_url, timeout=timeout_s)

    @classmethod
    def from_settings(cls, settings: Settings) -> CheckApi:
        return cls(f"http://{settings.api_host}:{settings.api_port}", settings.api_token)

    def quotas(self, workspace_id: str) -> Decisions:
        if self._token is None:
            return Decisions.unavailable("no check API token is configured (set METER_API_TOKEN)")
        headers = {"Authorization": f"Bearer {self._token.get_secret_value()}"}
        path = f"/v1/workspaces/{quote(workspace_id, safe='')}/quotas"
        try:
            response = self._http.get(path, headers=headers)
        except httpx.HTTPError as exc:
            log.debug("check API request failed: %s", type(exc).__name__)
            return Decisions.unavailable(
                f"the check API is not reachable at {self.base_url} (is `meter api` running?)")
        if response.status_code == 401:
            return Decisions.unavailable("the check API refused the token (check METER_API_TOKEN)")
        if response.status_code == 404:
            return Decisions.unavailable("the check API has no state for this workspace yet")
        if response.status_code != 200:
            return Decisions.unavailable(f"the check API answered HTTP {response.status_code}")
        try:
            return parse_quotas_answer(response.json())
        except (ValueError, KeyError, TypeError):
            return Decisions.unavailable("the check API's answer was not understood")

    def close(self) -> None:
        self._http.close()
