"""LiteRT agrees with Keras, converts once per trained model, and rejects what it cannot do."""

import numpy as np
import pytest

from harness import testing
from harness.api import DeviceUnavailable, SuiteError
from harness_fashion_litert.fashion_mnist import FashionMnistDataset, write_synthetic
from harness_fashion_litert.litert import SIDECAR_FILE, TFLITE_FILE, LiteRtBackend
from harness_fashion_litert.mlp import Mlp

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fashion_mlp(tmp_path_factory: pytest.TempPathFactory) -> testing.Reference:
    """The MLP trained on generated Fashion-MNIST, with Keras's logits on 1,000 test images."""
    data_dir = tmp_path_factory.mktemp("data")
    write_synthetic(data_dir, train=600, test=1000, seed=0)
    dataset = FashionMnistDataset()
    return testing.train_reference(
        tmp_path_factory.mktemp("model"),
        spec=Mlp(),
        data=dataset.load(data_dir, "train"),
        steps=20,
        eval_images=dataset.load(data_dir, "test").images,
    )


def test_top1_agrees_with_keras_on_at_least_999_per_mille(fashion_mlp: testing.Reference) -> None:
    predictor = LiteRtBackend().prepare(fashion_mlp.trained, "cpu", {})
    logits = np.concatenate(
        [predictor.predict(fashion_mlp.images[i : i + 100]) for i in range(0, 1000, 100)]
    )
    agreement = (logits.argmax(1) == fashion_mlp.reference_logits.argmax(1)).mean()
    assert agreement >= 0.999
    assert np.abs(logits - fashion_mlp.reference_logits).max() < 1e-3


def test_passes_the_conformance_kit_with_and_without_xnnpack(
    fashion_mlp: testing.Reference,
) -> None:
    for options in ({}, {"xnnpack": False, "num_threads": 1}):
        testing.check_backend(
            LiteRtBackend(),
            fashion_mlp.trained,
            fashion_mlp.images,
            fashion_mlp.reference_logits,
            options=options,
        )


def test_converts_once_and_reuses_the_cached_flatbuffer(fashion_mlp: testing.Reference) -> None:
    LiteRtBackend().prepare(fashion_mlp.trained, "cpu", {})
    cached = fashion_mlp.trained.artifact_dir / TFLITE_FILE
    stamp = cached.stat().st_mtime_ns
    details = LiteRtBackend().prepare(fashion_mlp.trained, "cpu", {"num_threads": 1}).describe()
    assert cached.stat().st_mtime_ns == stamp
    assert (fashion_mlp.trained.artifact_dir / SIDECAR_FILE).is_file()
    assert details["threads"] == 1
    assert details["tflite_bytes"] == cached.stat().st_size
    assert details["converter"].startswith("tf.lite.TFLiteConverter")


def test_a_device_other_than_the_cpu_is_unavailable(fashion_mlp: testing.Reference) -> None:
    with pytest.raises(DeviceUnavailable, match="cpu only, not 'gpu'"):
        LiteRtBackend().prepare(fashion_mlp.trained, "gpu", {})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"threads": 2}, "unknown key 'threads'; allowed: num_threads, xnnpack"),
        ({"num_threads": -1}, "num_threads must be a non-negative int, got -1"),
        ({"xnnpack": "yes"}, "xnnpack must be true or false, got 'yes'"),
    ],
)
def test_bad_options_are_suite_errors(
    options: dict, message: str, fashion_mlp: testing.Reference
) -> None:
    with pytest.raises(SuiteError, match=message):
        LiteRtBackend().prepare(fashion_mlp.trained, "cpu", options)


def test_listing_does_not_need_the_runtime_imported() -> None:
    assert LiteRtBackend().probe_devices() == {"cpu": None}


def test_a_missing_sidecar_means_a_fresh_conversion(fashion_mlp: testing.Reference) -> None:
    (fashion_mlp.trained.artifact_dir / SIDECAR_FILE).unlink()
    LiteRtBackend().prepare(fashion_mlp.trained, "cpu", {})
    assert (fashion_mlp.trained.artifact_dir / SIDECAR_FILE).is_file()
