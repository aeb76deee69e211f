"""leafseg.models.loading: config overrides on top of the config a model is loaded with
(``--set`` of predict, evaluate and export), on the tiny trained model (tests/tiny_trained.py),
whose weights file stores its config."""
import pytest

from leafseg.inference import cluster
from leafseg.models import loading
from tests.tiny_trained import trained_run
from tests.toy_data import ToyConfig

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

# Values the tiny model's weights do not depend on: a larger input, fewer detections.
OVERRIDES = {"IMAGE_MIN_DIM": 128, "IMAGE_MAX_DIM": 128, "DETECTION_MAX_INSTANCES": 3}


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return trained_run(tmp_path_factory)["weights"]


def test_overrides_go_on_top_of_the_config_stored_in_the_weights(weights, tmp_path):
    stored = loading.resolve_inference(weights)[0]
    assert (stored.IMAGE_MAX_DIM, stored.DETECTION_MAX_INSTANCES) == (ToyConfig.IMAGE_MAX_DIM,
                                                                     ToyConfig.DETECTION_MAX_INSTANCES)
    model, source, path = loading.load_inference_model(weights, model_dir=tmp_path, overrides=OVERRIDES)
    assert source.startswith("the config stored in") and str(path) == weights
    assert model.config.to_dict() == stored.replace(**OVERRIDES).to_dict()
    # The model is built with them: it keeps at most 3 detections.
    assert model.keras_model.get_layer("mrcnn_detection").output.shape[1] == 3


def test_min_score_and_the_overrides(weights):
    config = loading.resolve_inference(weights, min_score=0.7, overrides={"DETECTION_MIN_CONFIDENCE": 0.7})[0]
    assert config.DETECTION_MIN_CONFIDENCE == 0.7
    with pytest.raises(ValueError, match="min score 0.7 and DETECTION_MIN_CONFIDENCE=0.5 of the overrides disagree"):
        loading.resolve_inference(weights, min_score=0.7, overrides={"DETECTION_MIN_CONFIDENCE": 0.5})


@pytest.mark.parametrize("overrides, message", [
    ({"IMAGE_MAX_DIMS": 128}, "unknown config key 'IMAGE_MAX_DIMS' in arguments; did you mean IMAGE_MAX_DIM"),
    ({"IMAGE_MAX_DIM": 100}, "IMAGE_MAX_DIM = 100 is invalid: expected divisible by 64"),
    ({"DETECTION_MIN_CONFIDENCE": "high"}, "DETECTION_MIN_CONFIDENCE in arguments must be a number, got 'high'"),
])
def test_bad_overrides_are_named_before_a_model_is_built(weights, tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        loading.load_inference_model(weights, model_dir=tmp_path, overrides=overrides)


def test_an_override_the_weights_do_not_fit_is_named(weights, tmp_path):
    with pytest.raises(ValueError) as caught:
        loading.load_inference_model(weights, model_dir=tmp_path, overrides={"MASK_HEAD_CHANNELS": 8})
    message = str(caught.value)
    assert f"{weights}: these weights were trained with another configuration than the config stored in" in message
    assert "with MASK_HEAD_CHANNELS overridden (" in message
    assert message.endswith("and override only values that leave the layers' shapes as they are")


def test_cluster_workers_build_the_model_with_the_overrides(weights, tmp_path, monkeypatch):
    monkeypatch.setattr(cluster, "_MODELS", {})
    spec = cluster.ModelSpec(weights, None, 0.6, overrides=dict(OVERRIDES))
    stored = loading.resolve_inference(weights)[0]
    assert spec.config_object().to_dict() == stored.replace(DETECTION_MIN_CONFIDENCE=0.6, **OVERRIDES).to_dict()
    model = cluster.worker_model(spec, tmp_path)   # what predict_chunk calls on a worker
    assert model.config == spec.config_object()
    # Specs of other overrides are other models; equal ones share the worker's model.
    assert cluster.worker_model(cluster.ModelSpec(weights, None, 0.6, overrides=dict(OVERRIDES)), tmp_path) is model
    assert cluster.ModelSpec(weights, None, 0.6) != spec
    import pickle

    assert pickle.loads(pickle.dumps(spec)) == spec


def test_a_folder_of_weights_says_which_checkpoint_it_took_and_why(tmp_path):
    """Issue 26, 7: --weights RUN_OR_LOGS names the run folder, the checkpoint and the best one."""
    import json

    logs = tmp_path / "logs"
    older, newer = logs / "leaf20261204T1200", logs / "leaf20261207T1050"
    for path in (older / "mask_rcnn_leaf_0003.weights.h5", newer / "mask_rcnn_leaf_0009.weights.h5",
                 newer / "mask_rcnn_leaf_0012.weights.h5"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    best = str(newer / "mask_rcnn_leaf_0009.weights.h5")
    (newer / "checkpoints.json").write_text(json.dumps({
        "monitor": "val_loss", "best": {"epoch": 9, "monitor": "val_loss", "value": 0.84, "path": best},
        "checkpoints": [{"epoch": 9, "path": best, "logs": {"val_loss": 0.84}},
                        {"epoch": 12, "path": str(newer / "mask_rcnn_leaf_0012.weights.h5"),
                         "logs": {"val_loss": 0.9123}}]}))
    chosen = loading.resolve_weights(logs)
    assert chosen == newer / "mask_rcnn_leaf_0012.weights.h5"
    text = loading.describe_weights(logs, chosen)
    assert text == (f"--weights {logs}: the newest run folder in it (by the time in its name) with a checkpoint, "
                    f"leaf20261207T1050, and its newest checkpoint, epoch 12 (val_loss 0.9123); its best by "
                    f"val_loss is epoch 9 (0.84): --weights {best}")
    assert loading.describe_weights(older, loading.resolve_weights(older)) == (
        f"--weights {older}: a run folder, its newest checkpoint, epoch 3")
    assert loading.describe_weights(chosen, chosen) is None
