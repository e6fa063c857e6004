"""`serve` (issue 32): the HTTP service over a target's deployment, run as a user runs it (a real process on a free
port of 127.0.0.1, real WIDER images, real signals), its load test, Ray Serve, and Triton's repository."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from cli import run_cli
from toolkit.serve.load import Service

httpx = pytest.importorskip("httpx")


def start(cpu_run: Path, *options: object) -> Service:
    return Service(["--target", "cpu", "--from", str(cpu_run), *map(str, options)], lambda line: None)


@pytest.fixture(scope="module")
def service(cpu_run: Path):
    running = start(cpu_run)
    yield running
    running.stop()


def post(url: str, body: bytes, **headers) -> httpx.Response:
    return httpx.post(f"{url}/v1/detect", content=body, headers=headers, timeout=120)


def test_an_answer_has_the_faces_detect_finds(service: Service, cpu_run: Path, wider_images: list[Path],
                                             tmp_path: Path) -> None:
    image = wider_images[1]
    answer = post(service.url, image.read_bytes())
    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert found["target"] == "cpu" and found["precision_in_force"] == "fp32" and found["emulated"] is False
    assert found["width"] == 1024 and found["height"] > 0
    code, _, err = run_cli("detect", image, "--target", "cpu", "--from", cpu_run, "--no-pictures", "--out", tmp_path / "d")
    assert code == 0, err
    assert found["faces"] == json.loads((tmp_path / "d" / "detections.json").read_text())["images"][str(image)]
    assert found["faces"] and set(found["faces"][0]) == {"x1", "y1", "x2", "y2", "score", "landmarks"}


def big_png() -> bytes:
    from test_bad_input import big_png as made

    return made()


@pytest.mark.parametrize("body, status, says", [
    (b"", 400, "the body is empty"),
    (b"not an image at all", 400, "not a readable image"),
    (b"\xff\xd8\xff\xe0" + bytes(100), 400, "truncated JPEG"),
    (None, 413, "30000 x 30000 pixels; the service takes 40000000 at most"),
    (b"x" * (21 << 20), 413, "the service takes 20971520 at most"),
], ids=["empty", "garbage", "truncated", "too many pixels", "too large a body"])
def test_a_bad_request_is_a_4xx_of_one_line_of_json(service: Service, body: bytes | None, status: int, says: str,
                                                    catalogue: list) -> None:
    answer = post(service.url, big_png() if body is None else body)
    catalogue.append((f"serve: {says.split(';')[0]}", "POST /v1/detect", answer.status_code, answer.text))
    assert answer.status_code == status and "\n" not in answer.text.strip()
    assert says in answer.json()["error"]
    assert httpx.get(f"{service.url}/readyz").status_code == 200  # still standing


def test_health_readiness_metrics_and_the_openapi_page(service: Service) -> None:
    assert httpx.get(f"{service.url}/healthz").json() == {"alive": True}
    assert httpx.get(f"{service.url}/readyz").json() == {"ready": True}
    assert httpx.get(f"{service.url}/v1/detect").status_code == 405
    metrics = httpx.get(f"{service.url}/metrics").text
    for name in ("centerface_requests_total", "centerface_errors_total", "centerface_request_seconds_bucket",
                 "centerface_batch_size_bucket", "centerface_queue_depth",
                 'centerface_model_info{emulated="false",precision="fp32",target="cpu"} 1.0'):
        assert name in metrics, name
    assert "/v1/detect" in httpx.get(f"{service.url}/openapi.json").json()["paths"]


def test_overload_is_refused_at_once_and_memory_stays_bounded(cpu_run: Path, data_root: Path, tmp_path: Path) -> None:
    """bench --serve against a service of 8 slots: at 8 every request is answered; at 32 the excess gets 429 with
    Retry-After and the rest are answered, and the service's memory at its most stays within 200 MB of the calm
    level's most: the same 8 slots hold the same working set, and a refusal holds nothing (the bench's count-based
    warm-up has met every image's size first, so neither peak counts first-time arena growth)."""
    code, out, err = run_cli("bench", "--serve", "--target", "cpu", "--out", cpu_run_copy(cpu_run, tmp_path),
                             "--data", data_root, "--images", 4, "--concurrency", "8,32", "--duration", 6,
                             "--json", tmp_path / "s.json")
    assert code == 0, err
    calm, loaded = json.loads((tmp_path / "s.json").read_text())["levels"]
    assert calm["errors"] == {} and calm["answered"] > 0
    assert set(loaded["errors"]) == {"429"} and loaded["answered"] > 0
    assert loaded["rss_mb"]["peak"] - calm["rss_mb"]["peak"] < 200
    report = run_cli("report", "--runs", tmp_path, "--json", tmp_path / "r.json", "--markdown", tmp_path / "r.md")
    assert report[0] == 0, report[2]
    served = [r for r in json.loads((tmp_path / "r.json").read_text())["rows"] if r["status"] == "served"]
    assert served and served[0]["target"] == "run [served, c8]" and served[0]["served_images_per_s"] > 0


def cpu_run_copy(cpu_run: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(cpu_run, tmp_path / "run"))


def test_a_retry_after_comes_with_each_429(cpu_run: Path, wider_images: list[Path]) -> None:
    running = start(cpu_run, "--queue", 1)
    try:
        body = wider_images[0].read_bytes()
        answers: list[httpx.Response] = []
        threads = [threading.Thread(target=lambda: answers.append(post(running.url, body))) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        running.stop()
    refused = [a for a in answers if a.status_code == 429]
    assert refused and all(int(a.headers["retry-after"]) >= 1 for a in refused)
    assert {a.status_code for a in answers} <= {200, 429} and any(a.status_code == 200 for a in answers)


def test_sigterm_answers_every_accepted_request_before_exit(cpu_run: Path, wider_images: list[Path],
                                                            catalogue: list) -> None:
    running = start(cpu_run, "--queue", 16)
    body = wider_images[0].read_bytes()
    answers: list[int] = []
    threads = [threading.Thread(target=lambda: answers.append(post(running.url, body).status_code)) for _ in range(10)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _in_flight(running.url) < 10:  # all ten accepted, most still waiting
        time.sleep(0.05)
    accepted = _in_flight(running.url)
    running.proc.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(timeout=120)
    code = running.proc.wait(timeout=120)
    said = running.last_words()
    catalogue.append(("serve: SIGTERM under load", "kill -TERM <serve> with 10 requests accepted", code,
                      f"{answers.count(200)} of {accepted} accepted answered; {said}"))
    assert accepted == 10 and answers.count(200) == 10 and code == 0
    assert said.startswith("stopped: 10 requests answered")


def _in_flight(url: str) -> int:
    found = [line for line in httpx.get(f"{url}/metrics").text.splitlines() if line.startswith("centerface_queue_depth ")]
    return int(float(found[0].split()[1])) if found else 0


def test_a_token_guards_every_request_and_a_wide_bind_needs_one(cpu_run: Path, wider_images: list[Path],
                                                               tmp_path: Path) -> None:
    code, _, err = run_cli("serve", "--from", cpu_run, "--host", "0.0.0.0", "--port", 0,
                           env={"CENTERFACE_SERVE_TOKEN": ""})
    assert code == 2 and "--host 0.0.0.0: a service reachable from other machines needs a token" in err
    (tmp_path / "token").write_text("s3cret\n")
    running = start(cpu_run, "--token-file", tmp_path / "token")
    try:
        refused = post(running.url, wider_images[0].read_bytes())
        assert refused.status_code == 401 and "no valid token" in refused.json()["error"]
        assert httpx.get(f"{running.url}/metrics").status_code == 401
        assert httpx.get(f"{running.url}/readyz").status_code == 200  # probes need no token
        assert post(running.url, wider_images[0].read_bytes(), authorization="Bearer s3cret").status_code == 200
    finally:
        running.stop()


# --- Ray Serve --------------------------------------------------------------------------------------------

def test_ray_serve_gives_the_same_answers_and_a_killed_replica_loses_none(service: Service, cpu_run: Path,
                                                                          wider_images: list[Path], catalogue: list) -> None:
    pytest.importorskip("ray.serve", reason="--engine ray needs the [ray] extra")
    running = Service(["--engine", "ray", "--replicas", "2", "--from", str(cpu_run), "--queue", "64"], lambda line: None)
    try:
        bodies = [p.read_bytes() for p in wider_images[:4]]
        for body in bodies:  # box for box, as the local service
            assert post(running.url, body).json()["faces"] == post(service.url, body).json()["faces"]
        answers: list[int] = []
        threads = [threading.Thread(target=lambda i=i: answers.append(post(running.url, bodies[i % 4]).status_code))
                   for i in range(16)]
        for thread in threads:
            thread.start()
        time.sleep(2)
        killed = _kill_a_replica()
        for thread in threads:
            thread.join(timeout=180)
        catalogue.append(("serve --engine ray: a replica killed under load", f"ray.kill({killed})", 0,
                          f"{answers.count(200)} of 16 answered, {len([a for a in answers if a == 503])} x 503"))
        assert len(answers) == 16 and set(answers) <= {200, 503} and answers.count(200) >= 12
    finally:
        running.stop()


KILL = """
import ray
ray.init(address="auto", namespace="serve", log_to_driver=False, logging_level="ERROR")
name = next(a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if "detector" in a["name"])
ray.kill(ray.get_actor(name, namespace="serve"), no_restart=False)
print(name)
"""


def _kill_a_replica() -> str:
    """One detector replica of the running application, killed outright (as a node lost would), from a driver of
    its own (this process may hold another Ray)."""
    import subprocess
    import sys

    killed = subprocess.run([sys.executable, "-c", KILL], capture_output=True, text=True, timeout=120)
    assert killed.returncode == 0, killed.stderr[-2000:]
    return killed.stdout.strip().splitlines()[-1]


# --- Triton -----------------------------------------------------------------------------------------------

def test_the_triton_repository_parses_with_tritons_own_proto(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools", reason="the proto is compiled with grpcio-tools (the [test] extra)")
    from grpc_tools import protoc
    from google.protobuf import text_format

    code, _, err = run_cli("export", "--format", "triton", "--target", "t4", "--from", tmp_path / "t4", "--out",
                           tmp_path / "repo")
    assert code == 0, err
    proto = Path(__file__).parent / "data" / "triton"
    assert protoc.main(["protoc", f"-I{proto}", f"--python_out={tmp_path}", str(proto / "model_config.proto")]) == 0
    import importlib.util

    spec = importlib.util.spec_from_file_location("model_config_pb2", tmp_path / "model_config_pb2.py")
    model_config = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(model_config)
    parsed = {p.parent.name: text_format.Parse(p.read_text(), model_config.ModelConfig())
              for p in (tmp_path / "repo").glob("*/config.pbtxt")}
    assert set(parsed) == {"centerface", "centerface_pre", "centerface_engine", "centerface_post"}
    engine = parsed["centerface_engine"]
    assert engine.platform == "tensorrt_plan" and engine.max_batch_size == 16
    assert list(engine.dynamic_batching.preferred_batch_size) == [16] and list(engine.input[0].dims) == [3, 800, 800]
    assert [s.model_name for s in parsed["centerface"].ensemble_scheduling.step] == \
        ["centerface_pre", "centerface_engine", "centerface_post"]
    assert (tmp_path / "repo" / "centerface_engine" / "1" / "model.onnx").is_file()


def test_the_repositorys_python_models_compute_what_the_toolkit_does(wider_images: list[Path], cpu_run: Path) -> None:
    """Triton's pre and post models (NumPy only) against the toolkit's letterbox and decode, on real images and the
    real model's outputs: the same input within rounding, the same faces."""
    import importlib.util

    from toolkit.backends.onnxruntime import OnnxRuntimeRunner
    from toolkit.data.images import read_rgb
    from toolkit.data.preprocess import Preprocess
    from toolkit.postprocess import decode

    models = {}
    for name in ("pre", "post"):
        spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[1] / "toolkit" / "serve" /
                                                      "triton_models" / f"{name}.py")
        models[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(models[name])
    pre = Preprocess("letterbox", 800, 800)
    with OnnxRuntimeRunner(cpu_run / "centerface.onnx") as runner:
        for path in wider_images[:3]:
            rgb = read_rgb(path)
            ours, transform = pre(rgb)
            theirs, t = models["pre"].letterbox(rgb, 800, 800)
            assert np.abs(theirs - ours).max() <= 2 and np.allclose(t[:4], [transform.sx, transform.sy, transform.tx,
                                                                          transform.ty])
            outputs = {k: v[0] for k, v in runner.infer(ours[None]).items()}
            faces = decode(outputs["heatmap"], outputs["scale"], outputs["offset"], outputs["landmarks"], transform, 0.5)
            got = models["post"].decode(outputs["heatmap"], outputs["scale"], outputs["offset"], outputs["landmarks"], t,
                                        0.5, 0.3)
            np.testing.assert_allclose(got[:, :4], faces.boxes, atol=1e-3)
            np.testing.assert_allclose(got[:, 4], faces.scores, atol=1e-6)
            np.testing.assert_allclose(got[:, 5:], faces.landmarks, atol=1e-3)

