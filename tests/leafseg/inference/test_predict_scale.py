"""leafseg predict at scale: the pipeline, resuming into the same --out (also after kill -9), and
a Dask cluster (a LocalCluster of two processes; the jobqueue path by its job script)."""
import csv
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import pytest

from leafseg.models.runtime import choose_runtime
from leafseg.inference import cluster

from leafseg.inference import predict
from leafseg.cli import predict as predict_command

from leafseg.inference import results
from tests.command_output import run_main
from tests.tiny_trained import inference_model, trained_run
from tests.toy_data import shapes_dataset

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

MIN_SCORE = 0.6
COUNT = 8
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return trained_run(tmp_path_factory)["weights"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """COUNT toy images and one unreadable file, in a folder."""
    folder = tmp_path_factory.mktemp("photos")
    shapes = shapes_dataset(COUNT, seed=5)
    for i in range(COUNT):
        assert cv2.imwrite(str(folder / f"plant{i:02d}_rgb.png"), shapes.load_image(i)[..., ::-1])
    (folder / "plant99_rgb.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # broken: reported, never recorded
    return folder


def cli(argv):
    return run_main(predict_command.main, argv)


def argv(photos, weights, out, *extra):
    return [str(photos), "--weights", weights, "--out", str(out), "--min-score", str(MIN_SCORE), "--coco-json",
            "--quiet", *extra]


# report.html says when it was written and when the images were predicted, to the minute.
WHEN = re.compile(rb"\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC")
TITLE = re.compile(rb"(leafseg predict: )[^<]*")


def _report(path):
    """report.html's bytes with its times and its folder's name (its title) as placeholders."""
    return TITLE.sub(rb"\1<folder>", WHEN.sub(b"<time>", path.read_bytes()))


def outputs(out):
    """Every output file's bytes, by path relative to ``out`` (the run's own state left out;
    report.html's times and folder name as placeholders, the rest of it compared byte for byte)."""
    return {str(p.relative_to(out)): _report(p) if p.name == "report.html" else p.read_bytes()
            for p in sorted(Path(out).rglob("*")) if p.is_file() and results.STATE_DIR not in p.relative_to(out).parts}


@pytest.fixture(scope="module")
def one_go(photos, weights, tmp_path_factory):
    out = tmp_path_factory.mktemp("one_go")
    run = cli(argv(photos, weights, out))
    assert run.status == 0, run.stderr
    return out


def test_one_go_writes_every_image_once_with_a_record_each(one_go):
    files = outputs(one_go)
    assert sum(name.startswith("labels/") for name in files) == COUNT
    plants = files["plants.csv"].decode().splitlines()
    assert len(plants) == COUNT + 1 and [row.split(",")[0] for row in plants[1:]] == [f"plant{i:02d}" for i in
                                                                                      range(COUNT)]
    records = sorted(p.stem for p in (one_go / results.STATE_DIR / "images").glob("*.json"))
    assert records == [f"plant{i:02d}" for i in range(COUNT)]  # the broken file has none: a rerun tries it again


def test_a_rerun_predicts_nothing_again_and_rewrites_the_same_tables(one_go, photos, weights, monkeypatch):
    before = outputs(one_go)
    label_times = {p: p.stat().st_mtime_ns for p in (one_go / "labels").iterdir()}
    detected = []
    real = predict.predict_pending
    monkeypatch.setattr(predict, "predict_pending", lambda model, todo, *a, **k: (
        detected.extend(todo), real(model, todo, *a, **k))[1])
    run = cli(argv(photos, weights, one_go)[:-1])  # with the summary
    assert run.status == 0
    assert detected == [(photos / "plant99_rgb.png", "plant99")]  # only the unreadable file is tried again
    assert f"{COUNT} of them were predicted by an earlier run into this folder" in run.stdout
    assert "skipped" in run.stdout and "plant99_rgb.png" in run.stdout  # still reported
    assert outputs(one_go) == before
    assert {p: p.stat().st_mtime_ns for p in (one_go / "labels").iterdir()} == label_times


def test_an_interrupted_run_resumes_to_the_same_outputs(one_go, photos, weights, tmp_path, monkeypatch):
    from mrcnn.model import MaskRCNN

    out = tmp_path / "out"
    real = MaskRCNN.detect
    calls = []

    def interrupted(self, images, *args, **kwargs):
        calls.append(len(images))
        if len(calls) == 4:
            raise KeyboardInterrupt  # Ctrl-C while the model runs on the 4th image
        return real(self, images, *args, **kwargs)

    monkeypatch.setattr(MaskRCNN, "detect", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cli(argv(photos, weights, out))
    # The images before it were written (their writes finish before the run stops), none after.
    done = sorted(p.stem for p in (out / results.STATE_DIR / "images").glob("*.json"))
    assert done == ["plant00", "plant01", "plant02"]
    assert not (out / "plants.csv").exists()
    monkeypatch.setattr(MaskRCNN, "detect", real)
    seen = []
    pending = predict.predict_pending
    monkeypatch.setattr(predict, "predict_pending", lambda model, todo, *a, **k: (
        seen.extend(name for _, name in todo), pending(model, todo, *a, **k))[1])
    assert cli(argv(photos, weights, out)).status == 0
    assert seen == [f"plant{i:02d}" for i in range(3, COUNT)] + ["plant99"]
    assert outputs(out) == outputs(one_go)


def test_kill_9_halfway_then_a_rerun_gives_the_same_outputs(one_go, photos, weights, tmp_path):
    """The issue's check: a run killed with SIGKILL while it writes, then run again."""
    out = tmp_path / "killed"
    script = textwrap.dedent(f"""
        import sys, time
        from leafseg.cli import predict as predict_command
        from mrcnn.model import MaskRCNN
        real = MaskRCNN.detect
        def slow(*args, **kwargs):
            time.sleep(0.5)
            return real(*args, **kwargs)
        MaskRCNN.detect = slow
        sys.exit(predict_command.main({argv(photos, weights, out)!r}))
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    process = subprocess.Popen([sys.executable, "-c", script], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    records = out / results.STATE_DIR / "images"
    deadline = time.monotonic() + 300
    while len(list(records.glob("*.json"))) < 3:
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = len(list(records.glob("*.json")))
    assert 3 <= done < COUNT, "killed too late to test anything"
    assert not (out / "plants.csv").exists()
    assert cli(argv(photos, weights, out)).status == 0
    assert outputs(out) == outputs(one_go)
    leftovers = [p for p in out.rglob(".*") if p.name != results.STATE_DIR]
    assert leftovers == [], "temporary files of the killed run left behind"


def test_the_writer_runs_in_a_process_of_its_own_or_in_a_thread(weights, photos, tmp_path):
    model = inference_model(weights, MIN_SCORE)
    todo = [(photos / f"plant{i:02d}_rgb.png", f"plant{i:02d}") for i in range(3)]
    counts = {}
    for writer in ("process", "thread"):
        store = results.ResultStore(tmp_path / writer, {"test": 1})
        counts[writer] = predict.predict_pending(model, todo, predict.OutputOptions(str(tmp_path / writer)), store,
                                                 writer=writer)
        assert outputs(tmp_path / writer).keys() == {f"{kind}/plant{i:02d}_{suffix}.png" for i in range(3)
                                                     for kind, suffix in (("overlays", "overlay"), ("labels", "label"),
                                                                          ("plants", "plants"))}
    assert counts["process"] == counts["thread"]
    assert outputs(tmp_path / "process") == outputs(tmp_path / "thread")
    with pytest.raises(ValueError, match="writer must be auto, process or thread, got 'fork'"):
        predict.predict_pending(model, todo, predict.OutputOptions(str(tmp_path)), store, writer="fork")


def test_the_writer_thread_runs_niced_and_the_model_thread_does_not():
    """The writer (a thread by default) yields the CPU to the model's threads: on Linux its own
    priority drops by WRITER_NICENESS; the calling thread's stays."""
    import os
    import sys
    import threading

    caller = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    with predict._writer_pool("auto") as pool:
        assert pool.__class__.__name__ == "ThreadPoolExecutor"
        seen = pool.submit(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())).result()
    expected = min(caller + predict.WRITER_NICENESS, 19) if sys.platform.startswith("linux") else caller
    assert seen == expected
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == caller


def test_other_settings_in_the_same_folder_are_an_error_unless_overwrite(one_go, photos, weights, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(one_go, out)
    run = cli(argv(photos, weights, out, "--mm-per-pixel", "0.2"))
    assert run.status == 2
    assert "holds predictions made with other settings (mm_per_pixel: None then, 0.2 now)" in run.stderr
    assert "--overwrite" in run.stderr
    assert outputs(out) == outputs(one_go)  # nothing lost
    run = cli(argv(photos, weights, out, "--mm-per-pixel", "0.2", "--overwrite"))
    assert run.status == 0
    assert b"area_mm2" in (out / "leaves.csv").read_bytes()


def test_a_record_of_another_input_file_is_predicted_again(one_go, photos, weights, tmp_path):
    import shutil

    out = tmp_path / "moved"
    shutil.copytree(one_go, out)
    record = out / results.STATE_DIR / "images" / "plant03.json"
    data = json.loads(record.read_text())
    data["file"] = "/elsewhere/plant03_rgb.png"
    record.write_text(json.dumps(data))
    store = results.ResultStore.attach(out)
    assert not store.done("plant03", photos / "plant03_rgb.png")
    assert store.done("plant04", photos / "plant04_rgb.png")
    assert cli(argv(photos, weights, out)).status == 0
    assert outputs(out) == outputs(one_go)


def test_the_pipeline_batches_reads_ahead_and_reports_in_input_order(weights, photos, tmp_path):
    model = inference_model(weights, MIN_SCORE)
    calls = []

    class Spy:
        config = model.config

        def detect(self, images):
            calls.append(len(images))
            return model.detect(images)

    store = results.ResultStore(tmp_path, {"test": 1})
    files = sorted(photos.iterdir())
    todo = [(path, path.stem) for path in files]
    order = []
    outcomes = predict.predict_pending(Spy(), todo, predict.OutputOptions(str(tmp_path)), store, batch_size=3,
                                       on_done=lambda path, name, outcome: order.append(name), writer="thread")
    assert order == [name for _, name in todo]
    assert calls == [3, 3, 2]  # 8 readable images in batches of 3; the broken one is not sent
    assert isinstance(outcomes["plant99_rgb"], predict.ImageReadError)
    one = predict.predict_pending(model, todo[:1], predict.OutputOptions(str(tmp_path / "one")), store,
                                  writer="thread")
    assert outcomes["plant00_rgb"] == one["plant00_rgb"] and outcomes["plant00_rgb"] >= 0


def test_image_read_errors_survive_pickling():
    import pickle

    err = pickle.loads(pickle.dumps(predict.ImageReadError("/x/a.png", "truncated")))
    assert (str(err), err.reason, err.path) == ("/x/a.png: truncated", "truncated", Path("/x/a.png"))


# --------------------------------------------------------------------------------- cluster

def test_a_local_cluster_of_two_processes_gives_the_single_process_outputs(one_go, photos, weights, tmp_path):
    pytest.importorskip("distributed", reason="the cluster extra: pip install 'leafseg[cluster]'")
    out = tmp_path / "cluster"
    run = cli(argv(photos, weights, out, "--cluster", "local:2"))
    assert run.status == 0, run.stderr
    assert outputs(out) == outputs(one_go)


def dies_once(spec, chunk, options):
    """A cluster task whose worker process dies the first time it gets plant02 (a marker file
    remembers it), then predicts as usual."""
    marker = Path(options.out_dir) / "died_once"
    if any(name == "plant02" for _, name in chunk) and not marker.exists():
        marker.write_text("died\n")
        os._exit(1)  # the worker process is gone, mid-task, as when a machine fails
    return predict.predict_chunk(spec, chunk, options)


def test_a_worker_that_dies_has_its_images_run_elsewhere(one_go, photos, weights, tmp_path):
    pytest.importorskip("distributed", reason="the cluster extra: pip install 'leafseg[cluster]'")
    out = tmp_path / "died"
    # (the runtime the command ran one_go with: --runtime auto)
    spec = cluster.ModelSpec(weights, None, MIN_SCORE, runtime=str(choose_runtime("auto")))
    files = [photos / f"plant{i:02d}_rgb.png" for i in range(COUNT)]
    options = predict.OutputOptions(str(out), coco_json="rle")
    results.ResultStore(out, {"test": 1})
    outcomes = cluster.predict_on_cluster("local:2", spec, [(path, f"plant{i:02d}") for i, path in enumerate(files)],
                                          options, dies_once)
    assert (out / "died_once").exists()  # a worker did die
    store = results.ResultStore.attach(out)
    assert sorted(outcomes) == [f"plant{i:02d}" for i in range(COUNT)]
    for i in range(COUNT):  # every image predicted once the chunk ran again, as in one process
        name = f"plant{i:02d}"
        assert store.load(name) == results.ResultStore.attach(one_go).load(name)


def test_a_retried_chunk_predicts_only_the_images_not_recorded(one_go, photos, weights, tmp_path, monkeypatch):
    import shutil

    out = tmp_path / "retry"
    shutil.copytree(one_go, out)
    for name in ("plant02", "plant03"):
        (out / results.STATE_DIR / "images" / f"{name}.json").unlink()
    spec = cluster.ModelSpec(weights, None, MIN_SCORE)
    model = inference_model(weights, MIN_SCORE)
    monkeypatch.setitem(cluster._MODELS, spec, model)  # as if this worker had loaded it
    seen = []
    real = predict.finish_image
    monkeypatch.setattr(predict, "finish_image", lambda *a, **k: (seen.append(a[3]), real(*a, **k))[1])
    chunk = [(str(photos / f"plant{i:02d}_rgb.png"), f"plant{i:02d}") for i in range(4)]
    outcomes = predict.predict_chunk(spec, chunk, predict.OutputOptions(str(out), coco_json="rle"))
    assert seen == ["plant02", "plant03"]
    with open(one_go / "plants.csv", newline="") as handle:
        counts = {row["image"]: int(row["leaf_count"]) for row in csv.DictReader(handle)}
    assert outcomes == {f"plant{i:02d}": counts[f"plant{i:02d}"] for i in range(4)}
    assert outputs(out) == outputs(one_go)


@pytest.mark.parametrize("value, message", [
    ("local:0", "expected local:N with N >= 1"),
    ("local:two", "expected local:N with N >= 1"),
    ("cluster.yaml", "cluster file not found"),
    ("somewhere", "expected local:N, a scheduler address"),
])
def test_bad_cluster_values_are_named(value, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(cluster.ClusterError, match=message):
        cluster.parse_cluster(value)


def test_cluster_values():
    assert cluster.parse_cluster("local:3") == ("local", 3)
    assert cluster.parse_cluster("tcp://10.0.0.5:8786") == ("address", "tcp://10.0.0.5:8786")


@pytest.mark.parametrize("text, message", [
    ("jobqueue: lsf\ncores: 1\nmemory: 1GB\n", "jobqueue must be one of slurm, htcondor, pbs, got 'lsf'"),
    ("jobqueue: slurm\nmemory: 1GB\n", "cores missing"),
    ("jobqueue: slurm\ncores: 1\nmemory: 1GB\njobs: 0\n", "jobs must be a whole number >= 1"),
    ("- a list\n", "expected a mapping of options"),
    ("jobqueue: [slurm\n", "not valid YAML"),
])
def test_bad_cluster_files_are_named(text, message, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(cluster.ClusterError, match=f"{path}: .*{message}".replace("[", r"\[").replace("(", r"\(")):
        cluster.read_cluster_file(path)


def test_a_slurm_cluster_file_makes_the_job_script_it_submits(tmp_path):
    pytest.importorskip("dask_jobqueue", reason="the cluster extra: pip install 'leafseg[cluster]'")
    path = tmp_path / "slurm.yaml"
    path.write_text("jobqueue: slurm\njobs: 3\ncores: 8\nmemory: 32GB\nwalltime: '02:00:00'\nqueue: plants\n"
                    "job_extra_directives: ['--gres=gpu:1']\n")
    cls, options, jobs = cluster.read_cluster_file(path)
    assert (cls.__name__, jobs) == ("SLURMCluster", 3)
    script = cluster.job_script(path)
    assert "#SBATCH -p plants" in script
    assert "#SBATCH -n 1" in script and "#SBATCH --cpus-per-task=8" in script
    assert "#SBATCH --mem=30G" in script  # dask-jobqueue writes GiB
    assert "#SBATCH -t 02:00:00" in script
    assert "#SBATCH --gres=gpu:1" in script
    assert "distributed.cli.dask_worker" in script or "dask-worker" in script or "dask worker" in script


def test_without_dask_the_cluster_option_says_what_to_install(monkeypatch, tmp_path, photos, weights):
    import builtins

    real = builtins.__import__

    def no_dask(name, *args, **kwargs):
        if name.split(".")[0] in ("distributed", "dask_jobqueue", "dask"):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_dask)
    monkeypatch.setattr("importlib.import_module", lambda name, *a: no_dask(name))
    run = cli(argv(photos, weights, tmp_path / "out", "--cluster", "local:2"))
    assert run.status == 2
    assert "pip install 'leafseg[cluster]'" in run.stderr
