"""The HTTP face of the service (FastAPI; served by uvicorn, or by Ray Serve's proxy): `POST /v1/detect` takes an
image's bytes and answers its faces with named fields; `/healthz`, `/readyz`, `/metrics` (Prometheus) and the
OpenAPI page (`/docs`). Every refusal is a 4xx or 503 with one line of JSON naming what is wrong; nothing a client
sends makes the service fall over."""

import asyncio
import hmac
import json
import time
from typing import Protocol
from dataclasses import dataclass
from pathlib import Path

from toolkit.data.images import decode_rgb
from toolkit.errors import DeviceError, InputError
from toolkit.postprocess import Detections
from toolkit.serve.batcher import Overloaded, Unready
from toolkit.serve.metrics import Metrics

OPEN = ("/healthz", "/readyz")  # what a load balancer probes without the token


@dataclass(frozen=True)
class Limits:
    body_bytes: int = 20 << 20
    pixels: int = 40_000_000
    answer_s: float = 60.0  # a request answered by then, or 503


class Refused(Exception):
    def __init__(self, status: int, kind: str, message: str, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.message, self.headers = status, kind, message, headers or {}


class Model(Protocol):
    """What the app asks of the model side (the batcher here, a Ray Serve handle there)."""

    def admit(self) -> str: ...  # a slot, or Overloaded / Unready at once

    def release(self, key: str) -> None: ...  # a slot whose request never reached detect

    async def detect(self, key: str, rgb) -> Detections: ...

    def ready(self) -> str | None: ...  # None when loaded and warmed, else why not

    def in_flight(self) -> int: ...


def make_app(model: Model, describe: dict, metrics: Metrics, limits: Limits = Limits(), token: str | None = None,
             lifespan=None):
    """The application over `model`. A request takes its slot before its body is read, so one over the limit is
    refused at once. (No postponed annotations in this module: FastAPI reads the endpoints' `Request` parameters
    from their annotations.)"""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, PlainTextResponse, Response

    app = FastAPI(title="CenterFace face detection", version=describe.get("toolkit", ""), lifespan=lifespan,
                  description=f"Faces found by target {describe['target']}" + (" (EMULATED)" if describe.get("emulated")
                                                                                 else ""))

    def refusal(exc: Refused) -> JSONResponse:
        metrics.refused(exc.status, exc.kind)
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)

    @app.middleware("http")
    async def authorised(request: Request, call_next):
        if token is not None and request.url.path not in OPEN:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return refusal(Refused(401, "unauthorised", "no valid token: send Authorization: Bearer <token>",
                                       {"WWW-Authenticate": "Bearer"}))
        return await call_next(request)

    @app.post("/v1/detect", summary="Faces in one image (JPEG, PNG or WebP bytes as the body)")
    async def detect_faces(request: Request):
        started = time.perf_counter()
        try:
            key = model.admit()
            try:
                body = await _body(request, limits.body_bytes)
                rgb = await asyncio.to_thread(_picture, body, limits.pixels)
            except BaseException:
                model.release(key)
                raise
            faces = await asyncio.wait_for(model.detect(key, rgb), limits.answer_s)
        except Refused as exc:
            return refusal(exc)
        except Overloaded as exc:
            return refusal(Refused(429, "overloaded", str(exc), {"Retry-After": str(exc.retry_after)}))
        except Unready as exc:
            return refusal(Refused(503, "unready", str(exc), {"Retry-After": "5"}))
        except DeviceError as exc:
            return refusal(Refused(503, "device", exc.message))
        except asyncio.TimeoutError:
            return refusal(Refused(503, "timeout", f"not answered within {limits.answer_s:g} s"))
        body = await asyncio.to_thread(_answer, describe, rgb.shape, faces)  # encoded off the event loop
        metrics.answered(time.perf_counter() - started)
        return Response(body, media_type="application/json")

    @app.get("/healthz", summary="Alive")
    async def alive():
        return {"alive": True}

    @app.get("/readyz", summary="Ready: the model is loaded and warmed")
    async def is_ready():
        why = model.ready()
        return JSONResponse({"ready": why is None, **({"why": why} if why else {})}, status_code=503 if why else 200)

    @app.get("/metrics", summary="Prometheus metrics")
    async def exposed():
        metrics.queue_depth(model.in_flight())
        return PlainTextResponse(metrics.exposition(), media_type=metrics.content_type)

    return app


def _answer(describe: dict, shape: tuple[int, ...], faces: Detections) -> bytes:
    """The answer's JSON: what made it, the image's size, its faces with named fields."""
    return json.dumps({**describe, "width": shape[1], "height": shape[0], "faces": faces.as_json()},
                      separators=(",", ":")).encode()


async def _body(request, limit: int) -> bytes:
    """The request's body, refused (413) past `limit` bytes, before it is all read."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise Refused(413, "too_large", f"the body is {declared} bytes; the service takes {limit} at most")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refused(413, "too_large", f"the body is over {limit} bytes, the most the service takes")
        chunks.append(chunk)
    if not size:
        raise Refused(400, "bad_image", "the body is empty: send an image's bytes (JPEG, PNG or WebP)")
    return b"".join(chunks)


def _picture(body: bytes, pixels: int):
    """The body decoded to RGB, with the toolkit's checks (a complete file, EXIF orientation, finite pixels)
    and the service's pixel limit before any pixel is decoded."""
    def small_enough(width: int, height: int) -> None:
        if width * height > pixels:
            raise Refused(413, "too_large", f"the image is {width} x {height} pixels; the service takes {pixels} at most")

    try:
        return decode_rgb(body, Path("the request's image"), small_enough)
    except InputError as exc:
        raise Refused(400, "bad_image", exc.message) from None
