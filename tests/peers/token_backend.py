"""An MCP backend that only serves bearer tokens issued for it: a resource server on the official
SDK's own auth support (MCPServer with a TokenVerifier), which checks each token's signature against
the issuer's JWKS (PyJWT), its issuer, expiry and audience. The SDK also binds each session to the
principal (client, issuer, subject) whose token opened it.

    .cache/venv/bin/python tests/peers/token_backend.py --port 9101 --name alpha \\
        --issuer http://127.0.0.1:8080/realms/vmcp --audience backend-alpha --record /tmp/alpha.jsonl

Streamable HTTP at http://127.0.0.1:PORT/mcp. Tools:
  whoami() -> JSON of the token this call carried: sub, azp, aud, preferred_username and the
              SHA-256 of the token (never the token itself)
  echo(text) -> text

Every authenticated request is appended to --record as a JSON line
{"method", "sub", "azp", "aud", "token_sha256"}; a request without a valid token gets the SDK's
401 and is recorded as {"refused": true, "token_sha256": ... or null}.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import threading
from pathlib import Path
from typing import Any

import jwt
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer

LOOPBACK = "127.0.0.1"


def sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Recorder:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()

    def write(self, entry: dict[str, Any]) -> None:
        with self.lock, self.path.open("a") as out:
            out.write(json.dumps(entry) + "\n")


class JwksVerifier:
    """Checks a JWT against the issuer's keys, and that it was issued for `audience`."""

    def __init__(self, issuer: str, audience: str, recorder: Recorder) -> None:
        self.issuer = issuer
        self.audience = audience
        self.recorder = recorder
        self.keys = jwt.PyJWKClient(f"{issuer}/protocol/openid-connect/certs", cache_keys=True)

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            key = self.keys.get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                key,
                algorithms=["RS256", "ES256", "PS256"],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as err:
            self.recorder.write({"refused": True, "reason": type(err).__name__, "token_sha256": sha256(token)})
            return None
        self.recorder.write(
            {
                "sub": claims.get("sub"),
                "azp": claims.get("azp"),
                "aud": claims.get("aud"),
                "token_sha256": sha256(token),
            }
        )
        return AccessToken(
            token=token,
            client_id=str(claims.get("azp", "")),
            scopes=str(claims.get("scope", "")).split(),
            expires_at=int(claims["exp"]),
            subject=str(claims["sub"]),
            claims=claims,
        )


def build_server(name: str, issuer: str, audience: str, port: int, recorder: Recorder) -> MCPServer:
    server = MCPServer(
        name,
        token_verifier=JwksVerifier(issuer, audience, recorder),
        auth=AuthSettings(
            issuer_url=issuer,
            resource_server_url=f"http://{LOOPBACK}:{port}/mcp",
            # The verifier checks the audience itself.
            validate_token_resource=False,
        ),
    )

    @server.tool()
    def whoami() -> str:
        """The claims of the token this call carried (and its SHA-256)."""
        access = get_access_token()
        if access is None:
            return json.dumps({"anonymous": True})
        claims = access.claims or {}
        return json.dumps(
            {
                "sub": claims.get("sub"),
                "azp": claims.get("azp"),
                "aud": claims.get("aud"),
                "preferred_username": claims.get("preferred_username"),
                "token_sha256": sha256(access.token),
            }
        )

    @server.tool()
    def echo(text: str) -> str:
        """Returns its argument."""
        return text

    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    parser.add_argument("--name", default="alpha")
    parser.add_argument("--issuer", required=True, help="the realm's issuer URL")
    parser.add_argument("--audience", required=True, help="the audience a token must carry")
    parser.add_argument("--record", type=Path, required=True, help="JSON lines file of requests seen")
    args = parser.parse_args(argv)
    recorder = Recorder(args.record)
    server = build_server(args.name, args.issuer, args.audience, args.port, recorder)
    server.run("streamable-http", host=LOOPBACK, port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
