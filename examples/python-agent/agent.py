"""The demo agent's task from Python: a token for the tickets API, then the task completed.

Usage: ``python agent.py <broker> <private JWK file> [--dpop]``. Prints what it got as one line of JSON:
the token (its type, scope, task id and the token itself) and whether completing the task succeeded.
"""

from __future__ import annotations

import json
import sys
import uuid

from tessera_agent import DpopKey, TesseraClient, TesseraRefusal, self_signed_attestation

AGENT = "demo-agent"
TICKETS = "https://tickets.example.com"


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3) or (len(argv) == 3 and argv[2] != "--dpop"):
        print("usage: agent.py <broker> <private JWK file> [--dpop]", file=sys.stderr)
        return 2
    broker, key_file = argv[0], argv[1]
    with open(key_file, encoding="utf-8") as file:
        private_jwk = {name: value for name, value in json.load(file).items() if not name.startswith("_")}
    client = TesseraClient(broker, AGENT, dpop=DpopKey() if "--dpop" in argv else None)
    task = {"id": str(uuid.uuid4()), "description": "Summarise ticket T-1234 and post the summary as a comment"}
    # A fresh attestation for every exchange: the broker accepts each one once.
    token = client.exchange(self_signed_attestation(AGENT, private_jwk, broker), TICKETS, "tickets:read", task)
    refused = None
    try:
        client.exchange(self_signed_attestation(AGENT, private_jwk, broker), TICKETS, "tickets:delete", task)
    except TesseraRefusal as refusal:
        refused = refusal.error
    client.complete_task(task["id"], token)
    print(json.dumps({
        "token_type": token["token_type"],
        "scope": token["scope"],
        "task_id": token.get("task_id"),
        "task": task["id"],
        "access_token": token["access_token"],
        "refused": refused,
        "completed": True,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
