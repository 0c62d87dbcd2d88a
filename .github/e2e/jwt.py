#!/usr/bin/env python3
"""Print an HS256 JWT for the restore webhook (standard library only).

    JWT_SECRET=... python3 .github/e2e/jwt.py [--sub ci:e2e] [--iss eternia-e2e] [--aud eternia-backup] [--ttl 600]
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import sys
import time


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sub", default="ci:e2e")
    parser.add_argument("--iss", default="eternia-e2e")
    parser.add_argument("--aud", default="eternia-backup")
    parser.add_argument("--ttl", type=int, default=600)
    args = parser.parse_args()
    secret = os.environ.get("JWT_SECRET")
    if not secret:
        print("set JWT_SECRET to the webhook's HS256 secret", file=sys.stderr)
        return 2
    now = int(time.time())
    header = {"alg": "HS256", "typ": "JWT"}
    claims = {"iss": args.iss, "aud": args.aud, "sub": args.sub, "iat": now, "nbf": now, "exp": now + args.ttl}
    signing_input = ".".join(b64url(json.dumps(p, separators=(",", ":")).encode()) for p in (header, claims))
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    print(f"{signing_input}.{b64url(signature)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
