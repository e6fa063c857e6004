"""Images and containers: Dockerfiles linted, run specs per device kind, the build context, every
error, and (with a Docker daemon) the offline base image, the CPU image and the chain inside it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from cli import invoke, run_cli, spawn
from toolkit import __version__, targets
from toolkit.containers import images, runspec
from toolkit.containers.config import ContainerConfig
from toolkit.containers.context import build_context
from toolkit.containers.run import docker_kwargs
from toolkit.errors import InputError
from toolkit.paths import REPO_ROOT

DOCKERFILES = sorted((REPO_ROOT / "docker").glob("*.Dockerfile"))
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")


def write_target(tmp_path: Path, name: str, container: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(f'name = "{name}"\nbackend = "onnxruntime"\nruns_in = "container"\n\n[container]\n{container}\n')
    return path


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfiles_pass_hadolint(dockerfile: Path) -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run([hadolint, str(dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_dockerfile_takes_a_base_image_and_labels_its_target() -> None:
    assert {p.stem for p in DOCKERFILES} >= {"cpu", "ascend", "tensorrt"}
    for path in DOCKERFILES:
        text = path.read_text()
        assert text.count("ARG BASE_IMAGE=") == 1 and "FROM ${BASE_IMAGE}" in text
        assert 'io.centerface-toolkit.target="${TARGET}"' in text and "docker/install.sh" in text


def test_cpu_run_spec_mounts_runs_cache_and_data(tmp_path: Path) -> None:
    config = ContainerConfig.of(targets.load("cpu"))
    assert config.image == f"centerface-toolkit/cpu:{__version__}" and config.dockerfile == "cpu"
    data = tmp_path / "wider"
    data.mkdir()
    spec = runspec.make(config, ["run", "--target", "cpu"], tmp_path / "runs" / "cpu", tmp_path / "cache", data)
    mounts = {m.target: m for m in spec.mounts}
    assert set(mounts) == {"/runs/cpu", "/cache", "/data"}  # exactly the run folder, never its parent
    assert mounts["/runs/cpu"].source == str((tmp_path / "runs" / "cpu").resolve()) and not mounts["/runs/cpu"].read_only
    assert mounts["/cache"].source == str((tmp_path / "cache").resolve()) and not mounts["/cache"].read_only
    assert mounts["/data"].source == str(data.resolve()) and mounts["/data"].read_only
    assert spec.user == f"{os.getuid()}:{os.getgid()}" and spec.devices == [] and spec.gpus is None
    assert spec.environment["CENTERFACE_RUNS"] == "/runs" and spec.environment["CENTERFACE_CACHE"] == "/cache"
    assert spec.network == "none" and spec.command == ["run", "--target", "cpu"]
    kwargs = docker_kwargs(spec, tty=False)
    assert "device_requests" not in kwargs and kwargs["devices"] is None
    assert {m["Target"]: m["ReadOnly"] for m in kwargs["mounts"]} == {"/runs/cpu": False, "/cache": False, "/data": True}


def test_ascend_run_spec_passes_chips_driver_and_npu_smi(tmp_path: Path) -> None:
    target = targets.load(str(write_target(tmp_path, "npu", 'dockerfile = "ascend"\ndevices = "ascend"\nuser = "root"')))
    spec = runspec.make(ContainerConfig.of(target), [], tmp_path / "runs" / "npu", tmp_path, None, device_ids=[2, 3])
    assert spec.devices == [f"{d}:{d}:rwm" for d in ("/dev/davinci2", "/dev/davinci3", "/dev/davinci_manager",
                                                      "/dev/devmm_svm", "/dev/hisi_hdc")]
    mounts = {m.target: m for m in spec.mounts}
    for host_path in ("/usr/local/Ascend/driver", "/usr/local/sbin/npu-smi", "/usr/local/dcmi", "/etc/ascend_install.info"):
        assert mounts[host_path].read_only and mounts[host_path].source == host_path and host_path in spec.hardware
    # inside, ACL numbers the two chips 0 and 1: the first is 0, the host's ids travel for the record
    assert "/data" not in mounts and spec.user == "0:0" and spec.environment["ASCEND_DEVICE_ID"] == "0"
    assert spec.environment["CENTERFACE_HOST_DEVICE_IDS"] == "2,3"
    assert runspec.make(ContainerConfig.of(target), [], tmp_path / "r", tmp_path, None).devices[0] == "/dev/davinci0:/dev/davinci0:rwm"


def test_nvidia_run_spec_requests_only_the_gpus_named(tmp_path: Path) -> None:
    """The target file's device (t4: device_id = 0), --device-ids' ones, or every GPU only for --device-ids all."""
    config = ContainerConfig.of(targets.load("t4"))
    named = docker_kwargs(runspec.make(config, [], tmp_path / "r", tmp_path, None), tty=False)["device_requests"][0]
    assert named["DeviceIDs"] == ["0"] and named["Capabilities"] == [["gpu"]]
    one = docker_kwargs(runspec.make(config, [], tmp_path / "r", tmp_path, None, [1]), tty=False)["device_requests"][0]
    assert one["DeviceIDs"] == ["1"] and one["Capabilities"] == [["gpu"]]
    every = docker_kwargs(runspec.make(config, [], tmp_path / "r", tmp_path, None, "all"), tty=False)["device_requests"][0]
    assert every["Count"] == -1 and not every.get("DeviceIDs")
    assert "--gpus device=0 " in " ".join(runspec.make(config, [], tmp_path / "r", tmp_path, None).docker_cli())


@pytest.mark.parametrize("name", targets.available())
def test_every_target_has_a_run_spec_for_its_hardware(name: str, tmp_path: Path) -> None:
    config = ContainerConfig.of(targets.load(name))
    spec = runspec.make(config, ["run"], tmp_path / "runs" / name, tmp_path, None)
    assert config.image == f"centerface-toolkit/{name}:{__version__}" and config.dockerfile_path().is_file()
    kind = {"cpu": "none", "ascend": "ascend", "tensorrt": "nvidia"}[config.dockerfile]
    assert config.devices == kind
    assert bool(spec.devices) == (kind == "ascend") and (spec.gpus is not None) == (kind == "nvidia")
    # as the invoking user everywhere; on Ascend with the driver nodes' group (they are 660 for HwHiAiUser's group)
    assert spec.user == f"{os.getuid()}:{os.getgid()}" and bool(spec.groups) == (kind == "ascend")


def test_container_settings_are_checked(tmp_path: Path) -> None:
    for bad, message in (('devices = "tpu"', "devices 'tpu'"), ('dockerfile = "nope"', "nope.Dockerfile"),
                         ('user = "admin"', "user 'admin'"), ('volumes = []', "unknown key 'volumes'"),
                         ("build_args = 3", "build_args must be a table of strings")):
        with pytest.raises(InputError, match=message):
            ContainerConfig.of(targets.load(str(write_target(tmp_path, "bad", bad))))


def test_missing_npu_nodes_are_named_before_any_work(tmp_path: Path) -> None:
    if Path("/dev/davinci0").exists():
        pytest.skip("this host has an Ascend NPU")
    target = write_target(tmp_path, "npu", 'dockerfile = "ascend"\ndevices = "ascend"\nuser = "root"')
    result = invoke("run", "--target", target, "--mode", "container", "--out", tmp_path / "run")
    assert result.exit_code == 3 and "unavailable: target" in result.output and "/dev/davinci0" in result.output
    assert "missing on this host" in result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("ids", [",", "-1", "a,1"])
def test_bad_device_ids_are_one_line(ids: str, tmp_path: Path) -> None:
    result = invoke("run", "--target", "310", "--dry-run", "--device-ids", ids, "--out", tmp_path / "run")
    assert result.exit_code == 2 and f"--device-ids {ids!r}: expected numbers 0 or more" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()


def test_build_context_is_the_allowlist_plus_the_extra_ca(tmp_path: Path) -> None:
    cert = tmp_path / "proxy.crt"
    cert.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    names = tarfile.open(fileobj=build_context(cert)).getnames()
    assert {"requirements.txt", "docker/cpu.Dockerfile", "docker/install.sh", "toolkit/cli/app.py",
            "targets/cpu.toml", "calibration/cpu.toml", "docker/ca/extra.crt"} <= set(names)
    assert not [n for n in names if n.startswith((".venv", "runs", "tests", ".git")) or "__pycache__" in n]
    assert "docker/ca/extra.crt" not in tarfile.open(fileobj=build_context()).getnames()
    (tmp_path / "not.crt").write_text("hello")
    with pytest.raises(InputError, match="not a PEM certificate"):
        build_context(tmp_path / "not.crt")


def test_base_image_comes_from_option_then_target_then_dockerfile() -> None:
    config = ContainerConfig.of(targets.load("cpu"))
    assert images.base_image_for(config, images.BuildOptions()) == "python:3.11.11-slim-bookworm"
    assert images.base_image_for(config, images.BuildOptions(base_image="x/y:1")) == "x/y:1"
    args = images.build_args(config, images.BuildOptions(index_url="https://mirror/simple"))
    assert args["TARGET"] == "cpu" and args["TOOLKIT_VERSION"] == __version__ and args["INDEX_URL"] == "https://mirror/simple"


def test_no_docker_daemon_is_one_line_and_exit_3(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/docker.sock")
    result = invoke("build", "--target", "cpu")
    assert result.exit_code == 3 and "no Docker daemon at" in result.output and "Traceback" not in result.output


# --- with a Docker daemon ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def docker_client():
    """The daemon's client; skipped without one, unless CI demands it (CENTERFACE_REQUIRE_DOCKER=1)."""
    from toolkit.containers import engine
    from toolkit.errors import Unavailable

    try:
        return engine.client()
    except Unavailable as exc:
        if os.environ.get("CENTERFACE_REQUIRE_DOCKER"):
            raise
        pytest.skip(f"no usable Docker daemon: {exc.message}")


@pytest.fixture(scope="session")
def cpu_image(docker_client) -> str:
    """The CPU image built on the offline base (made first when missing), as a user behind a proxy would."""
    made = invoke("base-image")
    assert made.exit_code == 0, made.output
    options = ["--base-image", images.OFFLINE_BASE] + (["--extra-ca-cert", HOST_CA] if HOST_CA.is_file() else [])
    built = invoke("build", "--target", "cpu", *options)
    assert built.exit_code == 0, built.output
    image = docker_client.images.get(ContainerConfig.of(targets.load("cpu")).image)
    assert image.labels["io.centerface-toolkit.target"] == "cpu" and image.labels["org.opencontainers.image.version"] == __version__
    return image.tags[0]


def test_permission_denied_on_the_socket(docker_client) -> None:
    """As a user outside the docker group (a forked child that drops root), the real socket refuses."""
    from toolkit.containers import engine
    from toolkit.errors import Unavailable

    socket = Path("/var/run/docker.sock")
    if os.geteuid() != 0 or not socket.exists() or socket.stat().st_mode & 0o006:
        pytest.skip("needs root (to drop to nobody) and a socket closed to others")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: become nobody, connect, report the message, exit without pytest's cleanup
        os.close(read)
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
        try:
            engine.client()
            message = "connected"
        except Unavailable as exc:
            message = exc.message
        os.write(write, message.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        message = pipe.read()
    os.waitpid(pid, 0)
    assert message == f"permission denied on the Docker socket {engine.socket_path()}"


def test_missing_base_image_names_it_and_the_option(docker_client) -> None:
    result = invoke("build", "--target", "cpu", "--base-image", "centerface-toolkit/no-such-base:0")
    assert result.exit_code == 2
    assert "base image centerface-toolkit/no-such-base:0 is not on this host" in result.output and "--base-image" in result.output
    assert "MODE=emulate" not in result.output  # the CPU target has nothing to emulate


def test_a_vendor_target_whose_base_cannot_be_pulled_points_to_its_emulation(docker_client) -> None:
    result = invoke("build", "--target", "310p", "--base-image", "registry.invalid/ascendhub/cann:8.0.0")
    assert result.exit_code == 2
    assert "cannot be pulled" in result.output
    assert "`make target=310p MODE=emulate` gives its emulated AP on this host" in " ".join(result.output.split())


def test_a_vendor_base_image_that_cannot_be_pulled_is_named(docker_client, tmp_path: Path) -> None:
    target = write_target(tmp_path, "npu", 'dockerfile = "ascend"\nbase_image = "registry.invalid/ascendhub/cann:8.0.0"')
    result = invoke("build", "--target", target)
    assert result.exit_code == 2
    assert "base image registry.invalid/ascendhub/cann:8.0.0 is not on this host and cannot be pulled" in result.output
    assert "pass --base-image IMAGE" in result.output


def test_image_not_built_hints_the_build_command(docker_client, tmp_path: Path) -> None:
    target = write_target(tmp_path, "never-built", 'dockerfile = "cpu"')
    result = invoke("run", "--target", target, "--mode", "container", "--out", tmp_path / "run")
    assert result.exit_code == 2 and "image centerface-toolkit/never-built" in result.output
    assert "python -m toolkit build --target never-built" in result.output


def test_a_failed_build_step_shows_its_log_tail(cpu_image: str) -> None:
    result = invoke("build", "--target", "cpu", "--base-image", images.OFFLINE_BASE, "--index-url", "http://127.0.0.1:9/simple")
    assert result.exit_code == 2 and "failed at Step" in result.output and "install.sh" in result.output
    assert "127.0.0.1" in result.output  # pip's own complaint, from the step's log


def test_chain_in_the_container_equals_the_host_run(cpu_image: str, cpu_run: Path, data_root: Path, tmp_path: Path,
                                                    docker_client) -> None:
    out = tmp_path / "runs" / "cpu"
    result = invoke("run", "--target", "cpu", "--mode", "container", "--data", data_root, "--limit", 12, "--out", out)
    assert result.exit_code == 0, result.output
    inside, host = (json.loads((p / "result.json").read_text()) for p in (out, cpu_run))
    assert host["machine"]["runs_in"] == "host"
    assert inside["machine"]["runs_in"] == f"image {cpu_image}" and inside["container"]["image"] == cpu_image
    assert inside["container"]["id"] == docker_client.images.get(cpu_image).id  # the image that ran
    assert inside["ap"] == host["ap"] and inside["images"] == host["images"] == 12
    assert inside["dataset"] == str(data_root)
    for ours in sorted((out / "predictions").glob("*/*.txt")):
        assert ours.read_text() == (cpu_run / "predictions" / ours.relative_to(out / "predictions")).read_text()
    compared = invoke("compare-outputs", out, cpu_run, "--atol", 1e-5, "--rtol", 0)
    assert compared.exit_code == 0, compared.output
    assert (out / "result.json").stat().st_uid == os.getuid()
    assert not docker_client.containers.list(all=True, filters={"label": "io.centerface-toolkit.run"})


def test_ctrl_c_stops_and_removes_the_container(cpu_image: str, data_root: Path, tmp_path: Path, docker_client) -> None:
    import signal
    import time

    labels = {"label": "io.centerface-toolkit.run"}
    proc = spawn("run", "--target", "cpu", "--mode", "container", "--data", data_root, "--out", tmp_path / "runs" / "cpu")
    deadline = time.monotonic() + 120
    while not docker_client.containers.list(filters=labels) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert docker_client.containers.list(filters=labels), "the container never started"
    time.sleep(2)  # inside, the chain is now reading and inferring
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == f"interrupted: stopped cleanly, {tmp_path / 'runs' / 'cpu'} not created"
    assert not docker_client.containers.list(all=True, filters=labels)
    assert not list((tmp_path / "runs").iterdir())  # neither the run folder nor its staging copy


@pytest.fixture
def ray_head(tmp_path: Path):
    """A Ray head on this host with no CPUs of its own (so work must go to the nodes that join), and the
    environment a node or driver joins it with (the token, where the head asks for one)."""
    pytest.importorskip("ray", reason="the Ray engine needs the optional extra: pip install -e '.[ray]'")
    import socket

    ray_cli = str(Path(sys.executable).with_name("ray"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    subprocess.run([ray_cli, "start", "--head", f"--port={port}", "--num-cpus=0", "--include-dashboard=false",
                    "--disable-usage-stats"], check=True, capture_output=True, env=env, timeout=120)
    try:
        token = subprocess.run([ray_cli, "get-auth-token"], capture_output=True, text=True, env=env).stdout.split()
        join = {"RAY_USAGE_STATS_ENABLED": "0", **({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token[-1]} if token else {})}
        yield f"127.0.0.1:{port}", join
    finally:
        subprocess.run([ray_cli, "stop", "--force"], capture_output=True, env=env, timeout=120)


def test_the_cpu_image_joins_a_ray_cluster_and_runs_a_shard_of_the_run(
        cpu_image: str, ray_head, cpu_run: Path, data_root: Path, tmp_path: Path, docker_client) -> None:
    """The README's command: the target image starts a Ray node against the head; `run --engine ray`
    from the host then has its worker placed in the image (the head has no CPUs), same predictions."""
    address, join = ray_head
    mounts = {str(tmp_path): {"bind": str(tmp_path), "mode": "rw"}, str(data_root): {"bind": str(data_root), "mode": "ro"}}
    node = docker_client.containers.run(cpu_image, ["ray", "start", f"--address={address}", "--num-cpus=2", "--block"],
                                        network_mode="host", user="0:0", environment=join, volumes=mounts, detach=True)
    try:
        alive = "import ray; ray.init(address='%s', logging_level='ERROR'); print(sum(n['Alive'] for n in ray.nodes()))"
        for _ in range(60):
            found = subprocess.run([sys.executable, "-c", alive % address], capture_output=True, text=True,
                                   env={**os.environ, **join}, timeout=120).stdout.strip()
            if found.endswith("2"):
                break
            time.sleep(2)
        else:
            pytest.fail(f"the image did not join the cluster: {node.logs()[-2000:].decode(errors='replace')}")
        out = tmp_path / "runs" / "cpu"
        code, stdout, stderr = run_cli("run", "--target", "cpu", "--engine", "ray", "--address", address, "--workers", 1,
                                       "--data", data_root, "--limit", 12, "--out", out, env={**os.environ, **join})
        assert code == 0, stdout + stderr
    finally:
        node.remove(force=True)
    engine = json.loads((out / "result.json").read_text())["engine"]
    (worker,) = engine["per_worker"]
    assert worker["runs_in"] == f"image {cpu_image}" and worker["images"] == 12 and engine["address"] == address
    for ours in sorted((out / "predictions").glob("*/*.txt")):
        assert ours.read_bytes() == (cpu_run / "predictions" / ours.relative_to(out / "predictions")).read_bytes()


def _fake_amct_tree(folder: Path, arch: str) -> None:
    """What a CANN 8.0 toolkit holds for AMCT (ONNX), by the real names: the wheel
    amct_onnx-<ver>-py3-none-linux_<arch>.whl (a stand-in package that, like AMCT, refuses any other ONNX
    Runtime than 1.16.0 when imported) and amct_onnx_op.tar.gz (its custom-operator package: a setup.py
    that records it was built)."""
    import zipfile

    amct = folder / "usr/local/Ascend/ascend-toolkit/latest/tools/amct/amct_onnx"
    amct.mkdir(parents=True)
    files = {
        "amct_onnx/__init__.py": "import onnxruntime\nassert onnxruntime.__version__ == '1.16.0', onnxruntime.__version__\n",
        "amct_onnx/cli.py": "def main():\n    import amct_onnx, onnx\n    print('amct_onnx', onnx.__version__)\n",
        "amct_onnx-8.0.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: amct_onnx\nVersion: 8.0.0\n",
        "amct_onnx-8.0.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\nTag: py3-none-linux_" + arch + "\n",
        "amct_onnx-8.0.0.dist-info/entry_points.txt": "[console_scripts]\namct_onnx = amct_onnx.cli:main\n",
    }
    record = "".join(f"{name},,\n" for name in files) + "amct_onnx-8.0.0.dist-info/RECORD,,\n"
    with zipfile.ZipFile(amct / f"amct_onnx-8.0.0-py3-none-linux_{arch}.whl", "w") as whl:
        for name, text in {**files, "amct_onnx-8.0.0.dist-info/RECORD": record}.items():
            whl.writestr(name, text)
    op = folder / "op" / "amct_onnx_op"
    (op / "inc").mkdir(parents=True)
    (op / "setup.py").write_text("import amct_onnx, os, sys\nopen(os.path.join(os.path.dirname(amct_onnx.__file__), "
                                 "'custom_ops_built'), 'w').write(sys.version)\nprint('[INFO] Build amct_onnx_op success!')\n")
    with tarfile.open(amct / "amct_onnx_op.tar.gz", "w:gz") as tar:
        tar.add(op, arcname="amct_onnx_op")
    shutil.rmtree(folder / "op")


def test_the_ascend_image_installs_amcts_wheel_in_its_own_environment(docker_client, tmp_path: Path) -> None:
    """docker/ascend.Dockerfile's AMCT stage on a fake CANN tree holding a wheel of the real name: AMCT lands in
    /opt/amct with ONNX 1.14.0 and ONNX Runtime 1.16.0, its custom operators built, `amct_onnx` on PATH."""
    import io
    import platform

    assert invoke("base-image").exit_code == 0
    tree = tmp_path / "cann"
    _fake_amct_tree(tree, platform.machine())
    (tree / "Dockerfile").write_text(f"FROM {images.OFFLINE_BASE}\nCOPY usr/ /usr/\n")
    fake = "centerface-toolkit/test-fake-cann:8.0.0"
    docker_client.images.build(path=str(tree), tag=fake, rm=True)
    context = build_context(HOST_CA if HOST_CA.is_file() else None)
    log = io.StringIO()
    for chunk in docker_client.api.build(fileobj=context, custom_context=True, dockerfile="docker/ascend.Dockerfile",
                                         target="amct", tag="centerface-toolkit/test-amct:latest", rm=True,
                                         buildargs={"BASE_IMAGE": fake}, network_mode="host", decode=True):
        log.write(chunk.get("stream", "") + chunk.get("error", ""))
    assert "Successfully tagged centerface-toolkit/test-amct:latest" in log.getvalue(), log.getvalue()[-3000:]
    assert f"AMCT: /usr/local/Ascend/ascend-toolkit/latest/tools/amct/amct_onnx/amct_onnx-8.0.0-py3-none-linux_{platform.machine()}.whl" \
        in log.getvalue() and "[INFO] Build amct_onnx_op success!" in log.getvalue()
    probe = ("amct_onnx && /opt/amct/bin/python -c 'import onnx, onnxruntime, amct_onnx, os; "
             "print(onnx.__version__, onnxruntime.__version__, "
             "os.path.isfile(os.path.join(os.path.dirname(amct_onnx.__file__), \"custom_ops_built\")))'")
    out = docker_client.containers.run("centerface-toolkit/test-amct:latest", ["sh", "-c", probe], remove=True,
                                       network_mode="none", entrypoint=[]).decode()
    assert out.split() == ["amct_onnx", "1.14.0", "1.14.0", "1.16.0", "True"]


def test_a_container_run_records_each_devices_host_id(cpu_image: str, docker_client, tmp_path: Path) -> None:
    """Inside a container the devices it was given are numbered from 0; result.json keeps the host's ids."""
    from toolkit.containers import launch

    result = tmp_path / "result.json"
    result.write_text(json.dumps({"target": "cpu"}))
    config = ContainerConfig.of(targets.load("cpu"))
    launch.record_image(tmp_path, config, docker_client.images.get(cpu_image).id, None, [2, 3])
    saved = json.loads(result.read_text())["container"]
    assert json.loads(result.read_text())["target"] == "cpu"  # what the container record does not own stays
    assert saved["devices"] == [{"host_id": 2, "container_id": 0}, {"host_id": 3, "container_id": 1}]
    assert saved["image"] == config.image


def test_a_container_sees_only_its_run_folder_the_cache_and_the_data(cpu_image: str, docker_client, data_root: Path,
                                                                     tmp_path: Path) -> None:
    """Inside the real image, with the mounts the toolkit gives it: /runs holds only the run folder, /data is
    read-only, and the container runs as the invoking user."""
    from toolkit.containers import launch

    (tmp_path / "runs" / "neighbour").mkdir(parents=True)
    (tmp_path / "runs" / "neighbour" / "theirs.txt").write_text("another run's")
    spec = launch.container_spec(ContainerConfig.of(targets.load("cpu")), [], tmp_path / "runs" / "cpu", data_root, None)
    (tmp_path / "runs" / "cpu").mkdir()
    kwargs = {**docker_kwargs(spec, tty=False), "detach": False, "remove": True,
              "entrypoint": ["sh", "-c", "ls -A /runs; id -u; touch /data/x 2>/dev/null && echo data-writable; true"]}
    seen = docker_client.containers.run(**kwargs).decode().split()
    assert seen == ["cpu", str(os.getuid())], seen


def test_build_refuses_a_tag_of_an_image_it_did_not_build(cpu_image: str, docker_client, tmp_path: Path) -> None:
    """A build moves its tag only off an image the toolkit built (its target label)."""
    target = tmp_path / "tagged.toml"
    target.write_text('name = "tagged"\nbackend = "onnxruntime"\n[container]\ndockerfile = "cpu"\n')
    tag = ContainerConfig.of(targets.load(str(target))).image
    docker_client.images.get(images.OFFLINE_BASE).tag(tag)  # an image of that name the toolkit did not build
    try:
        built = invoke("build", "--target", target, "--base-image", images.OFFLINE_BASE)
        assert built.exit_code == 2 and f"image {tag}: exists and the toolkit did not build it" in built.output
        assert docker_client.images.get(tag).id == docker_client.images.get(images.OFFLINE_BASE).id
    finally:
        docker_client.images.remove(tag)


def test_detect_in_the_targets_image_gives_the_hosts_boxes(cpu_image: str, cpu_run: Path, wider_images,
                                                             tmp_path: Path) -> None:
    """detect --mode container: the inputs and the run folder mounted read-only at their own paths, the detect
    folder staged here; the same faces as on the host, named by the host's paths."""
    images = wider_images[:2]
    for mode, out in (("container", tmp_path / "inside"), ("host", tmp_path / "here")):
        result = invoke("detect", *images, "--target", "cpu", "--mode", mode, "--from", cpu_run, "--out", out)
        assert result.exit_code == 0, result.output
    inside, here = (json.loads((p / "detections.json").read_text()) for p in (tmp_path / "inside", tmp_path / "here"))
    assert inside["images"] == here["images"] and list(inside["images"]) == [str(p) for p in images]
    assert (tmp_path / "inside" / "detections.json").stat().st_uid == os.getuid()


def test_serve_in_the_targets_image_answers_as_on_the_host(cpu_image: str, cpu_run: Path, wider_images) -> None:
    """serve --mode container: the run folder mounted read-only, the host's network; the same faces as detect."""
    import httpx

    from toolkit.serve.load import Service

    running = Service(["--target", "cpu", "--from", str(cpu_run), "--mode", "container"], lambda line: None)
    try:
        answer = httpx.post(f"{running.url}/v1/detect", content=wider_images[0].read_bytes(), timeout=120)
    finally:
        code = running.stop()
    assert answer.status_code == 200 and answer.json()["target"] == "cpu" and code == 0, running.lines[-5:]
    result = invoke("detect", wider_images[0], "--target", "cpu", "--from", cpu_run, "--no-pictures", "--out",
                    cpu_run.parent / "served-detect")
    assert result.exit_code == 0, result.output
    found = json.loads((cpu_run.parent / "served-detect" / "detections.json").read_text())["images"]
    assert answer.json()["faces"] == found[str(wider_images[0])]
