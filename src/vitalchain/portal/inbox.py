"""The portal's inbox views (routes and the data they show)."""

from __future__ import annotations

from fastapi import APIRouter

from vitalchain.portal.web import Web

__all__ = ["router"]


def router(web: Web) -> APIRouter:
    """The inbox routes."""
    return APIRouter()
