"""The exact CANN command lines (see reference.md and the ModelZoo guide), as argument lists."""

from __future__ import annotations

from pathlib import Path

from toolkit.backends.ascend.cann import BENCHMARK_TOOL
from toolkit.model.signature import INPUT_NAME


def input_shape(batch: int, height: int, width: int) -> str:
    return f"{INPUT_NAME}:{batch},3,{height},{width}"


def atc(onnx: Path, output_stem: Path, batch: int, sizes: list[tuple[int, int]], soc_version: str,
        aipp_config: Path | None = None) -> list[str]:
    """ONNX -> .om; with AIPP the .om takes uint8 HWC images (`--enable_small_channel` as the guide's 310P).
    Several (width, height) sizes become one .om with `--dynamic_image_size` gears."""
    gears = len(sizes) > 1
    shape = input_shape(batch, -1, -1) if gears else input_shape(batch, sizes[0][1], sizes[0][0])
    command = ["atc", "--framework=5", f"--model={onnx}", "--input_format=NCHW", f"--input_shape={shape}"]
    if gears:
        command.append("--dynamic_image_size=" + ";".join(f"{h},{w}" for w, h in sizes))
    command += [f"--output={output_stem}", "--log=error", f"--soc_version={soc_version}"]
    if aipp_config is not None:
        command += [f"--insert_op_conf={aipp_config}", "--enable_small_channel=1"]
    return command + ["--output_type=FP32"]  # float32 outputs whatever the precision inside


def amct_calibration(onnx: Path, save_path: Path, batch: int, height: int, width: int, data_dir: Path,
                     batch_num: int, config: Path | None = None) -> list[str]:
    """INT8 calibration on real images; writes <save_path>_deploy_model.onnx and _fake_quant_model.onnx.
    `--batch_num`: how many batches of `data_dir` calibration runs (AMCT's default is 1; CANN 8.0.0 AMCT
    command-line options, hiascend.com canncommercial/800 atlasamct_16_0337). With `config` (amct_config's
    simple configuration file, which then holds the batch count: AMCT takes --calibration_config without
    --batch_num, atlasamct_16_0348)."""
    return ["amct_onnx", "calibration", "--model", str(onnx), "--save_path", str(save_path),
            "--input_shape", input_shape(batch, height, width), "--data_dir", str(data_dir), "--data_types", "float32",
            *(["--calibration_config", str(config)] if config else ["--batch_num", str(batch_num)])]


def amct_config(batch_num: int, skip_layers: tuple[str, ...]) -> str:
    """AMCT's simple post-training configuration (protobuf text of AMCTConfig in amct_onnx/proto/
    calibration_config_onnx.proto; fields as CANN 8.0 to 9.0 document them, atlasamct_16_0163): the batch
    count and the layers (ONNX node names) left unquantised."""
    skipped = "".join(f'skip_layers : "{name}"\n' for name in skip_layers)
    return f"batch_num : {batch_num}\n{skipped}"


def ais_bench(om: Path, output: Path, output_dirname: str, batch: int, device: int = 0,
              inputs: Path | None = None, loop: int | None = None, gear: tuple[int, int] | None = None) -> list[str]:
    """Inference over a folder of input .bin files, or (no inputs) a timed `--loop` on generated data. A
    gear model runs at `gear` (height, width): ais_bench sets the image size only from `--dymHW h,w`
    (Ascend/msit@42a9c807 ais_bench/infer/benchmark_process.py: set_session_options)."""
    command = ["python3", "-m", "ais_bench", "--model", str(om)]
    if inputs is not None:
        command += ["--input", str(inputs)]
    command += ["--output", str(output), "--output_dirname", output_dirname, "--batchsize", str(batch),
                "--device", str(device)]
    if gear is not None:
        command += ["--dymHW", f"{gear[0]},{gear[1]}"]
    return command + (["--loop", str(loop)] if loop else [])


def benchmark(om: Path, info: Path, batch: int, height: int, width: int, device: int = 0,
              tool: str = f"./{BENCHMARK_TOOL}") -> list[str]:
    """The older tool, run in the folder it writes result/ into: outputs in result/dumpOutput_device<id>/
    (numbered from 1), figures in result/perf_vision_batchsize_<bs>_device_<id>.txt."""
    return [tool, "-model_type=vision", f"-device_id={device}", f"-batch_size={batch}",
            f"-om_path={om}", f"-input_text_path={info}", f"-input_width={width}", f"-input_height={height}",
            "-output_binary=True", "-useDvpp=False"]
