"""Tessera from Python: an RFC 8693 token exchange with a self-signed attestation, DPoP optional.

Authlib's OAuth 2.0 client sends the exchange (the grant is plain RFC 8693, so any OAuth client that lets
you name the grant type and add parameters will do); joserfc signs the attestation and the DPoP proofs
(RFC 9449). ``agent.py`` uses it; ``test/agent/python.test.ts`` runs that against a real broker.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.jwk import ECKey

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"


def self_signed_attestation(agent: str, private_jwk: dict, broker: str, lifetime: int = 120) -> str:
    """An attestation signed with the agent's registered key: iss = sub = the agent, aud = the broker."""
    key = ECKey.import_key(private_jwk)
    now = int(time.time())
    claims = {"iss": agent, "sub": agent, "aud": broker, "jti": str(uuid.uuid4()), "iat": now, "exp": now + lifetime}
    return jwt.encode({"alg": private_jwk.get("alg", "ES256"), "kid": private_jwk["kid"]}, claims, key)


class DpopKey:
    """A DPoP key pair for one task, and the proofs it signs (RFC 9449 §4.2)."""

    def __init__(self) -> None:
        self._key = ECKey.generate_key("P-256", private=True)
        self.public_jwk = self._key.as_dict(private=False)

    def proof(self, method: str, url: str, access_token: str | None = None, nonce: str | None = None) -> str:
        scheme, netloc, path, _query, _fragment = urlsplit(url)
        claims = {
            "jti": str(uuid.uuid4()),
            "iat": int(time.time()),
            "htm": method.upper(),
            "htu": urlunsplit((scheme, netloc, path, "", "")),
        }
        if access_token is not None:
            digest = hashlib.sha256(access_token.encode("ascii")).digest()
            claims["ath"] = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
        if nonce is not None:
            claims["nonce"] = nonce
        return jwt.encode({"alg": "ES256", "typ": "dpop+jwt", "jwk": self.public_jwk}, claims, self._key)


@dataclass
class TesseraRefusal(Exception):
    """The broker refused: its OAuth ``error`` and ``error_description``, kept as it sent them."""

    error: str
    description: str | None

    def __str__(self) -> str:
        return f"{self.error}: {self.description}" if self.description else self.error


class TesseraClient:
    """A client of one broker: token exchange for a task, and the task's completion."""

    def __init__(self, broker: str, agent: str, dpop: DpopKey | None = None) -> None:
        self.broker = broker.rstrip("/")
        self.dpop = dpop
        self._nonce: str | None = None
        # A public client, named by its client_id (RFC 6749 §2.3): the attestation is the agent's credential.
        self._session = OAuth2Session(client_id=agent, token_endpoint_auth_method="none")
        self._session.register_compliance_hook("access_token_response", self._remember_nonce)

    def _remember_nonce(self, response):
        self._nonce = response.headers.get("DPoP-Nonce", self._nonce)
        return response

    def exchange(self, attestation: str, audience: str, scope: str, task: dict, ttl: int | None = None) -> dict:
        """One RFC 8693 exchange; with DPoP, a ``use_dpop_nonce`` answer is retried once with its nonce."""
        url = f"{self.broker}/token"
        params = {
            "subject_token": attestation,
            "subject_token_type": JWT_TOKEN_TYPE,
            "audience": audience,
            "scope": scope,
            # In the form encoding, the task object is a JSON string (docs/api.md, POST /token).
            "task": json.dumps(task),
        }
        if ttl is not None:
            params["requested_ttl"] = str(ttl)
        try:
            return self._exchange_once(url, params)
        except OAuthError as refusal:
            if refusal.error != "use_dpop_nonce" or self.dpop is None:
                raise TesseraRefusal(refusal.error, refusal.description) from None
        # RFC 9449 §8: once more, with the nonce the broker sent with its refusal.
        try:
            return self._exchange_once(url, params)
        except OAuthError as refusal:
            raise TesseraRefusal(refusal.error, refusal.description) from None

    def _exchange_once(self, url: str, params: dict) -> dict:
        headers = {"Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"}
        if self.dpop is not None:
            headers["DPoP"] = self.dpop.proof("POST", url, nonce=self._nonce)
        return dict(self._session.fetch_token(url, grant_type=TOKEN_EXCHANGE, headers=headers, **params))

    def complete_task(self, task_id: str, token: dict) -> None:
        """Ends the task with one of its tokens: the broker revokes every token of the task."""
        url = f"{self.broker}/tasks/{task_id}/complete"
        headers = {"Accept": "application/json", "Authorization": f"{token['token_type']} {token['access_token']}"}
        if token["token_type"] == "DPoP":
            if self.dpop is None:
                raise TypeError("a DPoP-bound token without its key")
            headers["DPoP"] = self.dpop.proof("POST", url, access_token=token["access_token"])
        # withhold_token: this request carries its own Authorization (Authlib would send its last token as Bearer).
        response = self._session.post(url, headers=headers, withhold_token=True)
        if response.status_code != 200:
            body = response.json()
            raise TesseraRefusal(body.get("error", str(response.status_code)), body.get("error_description"))
