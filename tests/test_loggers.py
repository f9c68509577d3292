"""Loggers: TensorBoard (default; scalars and the figures as images) and Weights & Biases (offline)."""

from __future__ import annotations

import contextlib
import io
import json
import struct

import numpy as np
import pytest

from tests.test_launcher import TINY  # its programs are in the persistent compilation cache


def train(args: list[str]) -> tuple[int, str]:
    from experiments import train as launcher

    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        code = launcher.cli(["train", *args])
    return code, stderr.getvalue()


def tensorboard_events(logdir) -> list:
    """Every Event of the run's TensorBoard files (TFRecord framing: length, crc, payload, crc)."""
    from tensorboardX.proto import event_pb2

    events = []
    for path in sorted(logdir.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset:offset + 8])
            payload = data[offset + 12:offset + 12 + length]
            offset += 12 + length + 4
            events.append(event_pb2.Event.FromString(payload))
    return events


@pytest.fixture(scope="module")
def wandb_run(tmp_path_factory):
    pytest.importorskip("wandb", reason="the wandb extra is not installed (pip install 'metarl-jax[wandb]')")
    base = tmp_path_factory.mktemp("loggers")
    logdir = base / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WANDB_MODE", "offline")
        patch.setenv("WANDB_DIR", str(base / "wandb_dir"))
        patch.setenv("WANDB_SILENT", "true")
        (base / "wandb_dir").mkdir()
        code, stderr = train([*TINY, "--num_steps=4", f"--logdir={logdir}", "--logger=tensorboard,wandb",
                              "--wandb_project=metarl_test"])
    assert code == 0, stderr
    return base, logdir


def test_tensorboard_gets_the_scalars_and_the_figures_as_images(wandb_run):
    from PIL import Image

    _, logdir = wandb_run
    records = [json.loads(line) for line in (logdir / "metrics.jsonl").read_text().splitlines()]
    events = tensorboard_events(logdir)
    scalars = {(v.tag, e.step): v.simple_value for e in events for v in e.summary.value if v.HasField("simple_value")}
    for record in records:
        for key in ("train/pre_return", "train/post_return", "time/env_steps"):
            assert scalars[(key, record["step"])] == pytest.approx(record[key], rel=1e-6)
    assert scalars[("eval/return_step1", 4)] == pytest.approx(records[-1]["eval/return_step1"], rel=1e-6)
    images = {v.tag: (e.step, v.image) for e in events for v in e.summary.value if v.HasField("image")}
    assert set(images) == {"figures/adaptation_curve", "figures/training_curves"}
    for tag, (step, image) in images.items():
        assert step == 4
        png = Image.open(io.BytesIO(image.encoded_image_string))
        assert png.size == (image.width, image.height) and min(png.size) > 100
        # The image is the PNG written under figures/ (same pixels).
        name = "adaptation_curve_val_step4.png" if tag == "figures/adaptation_curve" else "training_curves.png"
        on_disk = np.asarray(Image.open(logdir / "figures" / name).convert("RGB"))
        np.testing.assert_array_equal(np.asarray(png.convert("RGB")), on_disk)


def wandb_history(path) -> tuple[dict[int, dict], dict]:
    """({step: {key: value}}, the run's config) of an offline run file (``run-<id>.wandb``): W&B's LevelDB-log framing
    (7-byte ":W&B" header, 32 KiB blocks, records of crc32/length/type + payload) of ``Record`` protobufs."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, position, chunks, history, config = 32768, 7, [], {}, {}
    while position + 7 <= len(data):
        left = block - position % block
        _, length, kind = struct.unpack("<IHB", data[position:position + 7]) if left >= 7 else (0, 0, 0)
        if left < 7 or (length == 0 and kind == 0):  # block trailer / padding
            position += left
            continue
        chunks.append(data[position + 7:position + 7 + length])
        position += 7 + length
        if kind in (1, 4):  # FULL or LAST: a whole record
            record = wandb_internal_pb2.Record.FromString(b"".join(chunks))
            chunks = []
            if record.WhichOneof("record_type") == "history":
                items = {item.key or "/".join(item.nested_key): json.loads(item.value_json)
                         for item in record.history.item}
                history.setdefault(int(items["_step"]), {}).update(items)
            elif record.WhichOneof("record_type") == "run":
                config.update({item.key: json.loads(item.value_json) for item in record.run.config.update})
    return history, config


def test_wandb_offline_run_holds_the_metrics_and_figures(wandb_run):
    base, logdir = wandb_run
    run_id = json.loads((logdir / "wandb_run.json").read_text())["id"]
    runs = list((base / "wandb_dir" / "wandb").glob(f"offline-run-*-{run_id}"))
    assert len(runs) == 1, list((base / "wandb_dir").rglob("*"))[:20]
    history, config = wandb_history(runs[0] / f"run-{run_id}.wandb")
    records = [json.loads(line) for line in (logdir / "metrics.jsonl").read_text().splitlines()]
    assert sorted(history) == [r["step"] for r in records] == [1, 2, 3, 4]
    for record in records:  # the same flat dict as metrics.jsonl, every step
        logged = history[record["step"]]
        for key, value in record.items():
            if key != "step" and isinstance(value, float):
                assert logged[key] == pytest.approx(value, rel=1e-6), key
    media = runs[0] / "files"
    for tag in ("figures/adaptation_curve", "figures/training_curves"):
        assert history[4][f"{tag}/_type"] == "image-file"
        assert (media / history[4][f"{tag}/path"]).is_file()
    saved = json.loads((logdir / "config.json").read_text())
    assert config["config"] == saved["config"] and config["env"] == saved["env"]


@pytest.mark.parametrize("logger, message", [("tensorboard,foo", "distinct loggers of"),
                                             ("tensorboard,tensorboard", "distinct loggers of")])
def test_bad_logger_is_refused_before_anything_is_written(tmp_path, logger, message):
    code, stderr = train([*TINY, "--num_steps=4", f"--logdir={tmp_path / 'run'}", f"--logger={logger}"])
    assert code == 2 and message in stderr, stderr
    assert not (tmp_path / "run").exists()
