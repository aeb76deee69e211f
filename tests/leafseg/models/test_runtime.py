"""Choosing the inference runtime (leafseg.models.runtime), and what a run's settings record of it."""
import json

import pytest

from leafseg.models import runtime as runtime_module
from leafseg.inference.results import ResultStore, SettingsMismatch
from leafseg.models.runtime import INSTALL_OPENVINO, choose_runtime, runtime_setting


@pytest.fixture
def machine(monkeypatch):
    """Set what this machine has: machine(openvino=..., gpu=...)."""
    def set_machine(openvino, gpu=False):
        monkeypatch.setattr(runtime_module, "_openvino_available", lambda: openvino)
        monkeypatch.setattr(runtime_module, "_gpu_present", lambda: gpu)
    return set_machine


def test_auto_is_openvino_on_a_cpu_where_it_is_installed(machine):
    machine(openvino=True)
    choice = choose_runtime("auto")
    assert choice == "openvino" and "fastest installed" in choice.reason
    assert choose_runtime(None, "bfloat16") == "openvino"


def test_auto_is_tensorflow_without_openvino_and_says_how_to_add_it(machine):
    machine(openvino=False)
    choice = choose_runtime("auto")
    assert choice == "tensorflow" and INSTALL_OPENVINO in choice.reason


def test_auto_is_tensorflow_on_a_gpu(machine):
    machine(openvino=True, gpu=True)
    choice = choose_runtime("auto")
    assert choice == "tensorflow" and "GPU" in choice.reason


def test_auto_keeps_tensorflow_for_float16(machine):
    machine(openvino=True)
    choice = choose_runtime("auto", "float16")
    assert choice == "tensorflow" and "float16" in choice.reason


def test_asking_for_openvino_without_it_names_the_extra(machine):
    machine(openvino=False)
    with pytest.raises(ValueError, match=r"openvino package is not installed; pip install 'leafseg\[openvino\]'"):
        choose_runtime("openvino")


def test_asking_for_openvino_in_float16_is_refused(machine):
    machine(openvino=True)
    with pytest.raises(ValueError, match="not float16"):
        choose_runtime("openvino", "float16")


def test_asking_for_tensorflow_is_kept_whatever_is_installed(machine):
    machine(openvino=True)
    assert choose_runtime("tensorflow") == "tensorflow"


def test_an_unknown_runtime_is_refused():
    with pytest.raises(ValueError, match="runtime must be one of auto, tensorflow, openvino, got 'onnx'"):
        choose_runtime("onnx")


def test_openvino_really_missing_is_reported_as_not_installed(monkeypatch):
    """With the package unimportable (as without the extra), mrcnn.openvino says so and auto is TensorFlow."""
    import sys

    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now raises ImportError
    from mrcnn import openvino

    assert not openvino.available()
    monkeypatch.setattr(runtime_module, "_gpu_present", lambda: False)
    assert choose_runtime("auto") == "tensorflow"
    with pytest.raises(ValueError, match=r"leafseg\[openvino\]"):
        choose_runtime("openvino")


class _Runtime:
    name, precision, description = "openvino", "bf16", "OpenVINO test (CPU, bf16)"


class _Model:
    runtime = None


def test_settings_name_the_runtime_and_its_precision():
    model = _Model()
    assert runtime_setting(model) == "tensorflow"
    model.runtime = _Runtime()
    assert runtime_setting(model) == "openvino bf16"
    assert runtime_setting(object()) == "tensorflow"  # (a stand-in model without a runtime)


def test_a_folder_predicted_before_runtimes_were_recorded_resumes_with_tensorflow(tmp_path):
    store = ResultStore(tmp_path, {"weights": "w"})
    (store.records / "a.json").write_text("{}")
    settings = json.loads((store.root / "settings.json").read_text())
    assert "runtime" not in settings
    ResultStore(tmp_path, {"weights": "w", "runtime": "tensorflow"})  # no mismatch: it was TensorFlow's


def test_resuming_with_another_runtime_says_how_to_go_on_as_before(tmp_path):
    store = ResultStore(tmp_path, {"weights": "w", "runtime": "tensorflow"})
    (store.records / "a.json").write_text("{}")
    with pytest.raises(SettingsMismatch, match=r"runtime: 'tensorflow' then, 'openvino f32' now.*"
                                               r"or --runtime tensorflow to go on as before"):
        ResultStore(tmp_path, {"weights": "w", "runtime": "openvino f32"})
