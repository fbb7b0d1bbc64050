"""Optional API keys: once any key is configured, every route but /health needs one.

``async`` because it never blocks: a sync dependency would cost every request a thread-pool hop.
"""

from __future__ import annotations

import secrets

from fastapi import HTTPException, Request, status

from embedding_studio.config import get_settings


async def require_api_key(request: Request) -> None:
    keys = get_settings().api_keys
    if not keys:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="missing API key: send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not any(secrets.compare_digest(token, key) for key in keys):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="invalid API key",
            headers={"WWW-Authenticate": "Bearer"},
        )
