"""``leafseg predict --cluster``: predict on many machines (or processes) through Dask.

    leafseg predict --cluster local:4 photos/            # a local cluster of 4 worker processes
    leafseg predict --cluster tcp://10.0.0.5:8786 photos/   # a running Dask scheduler
    leafseg predict --cluster slurm.yaml photos/         # a SLURM, HTCondor or PBS cluster (dask-jobqueue)

Dask and dask-jobqueue are optional: ``pip install 'leafseg[cluster]'``.

The images go to the workers in small chunks (tasks). Each worker loads the model once, the
first time it gets a chunk, and keeps it for the others (:func:`worker_model`); it predicts
its chunk as a single process does (:func:`leafseg.inference.predict.predict_chunk`) and writes the
outputs and each image's record into ``--out``, which every worker must see (a shared file system). The client merges
the records into the tables in input order (:mod:`leafseg.inference.results`), so the outputs are those of
a single-process run, row for row and file for file. A chunk whose worker dies is run again
elsewhere (Dask reschedules it); a chunk that raises is retried twice; its images already
recorded are not predicted again. An image that cannot be read is reported by name, as in a
single process. Workers run TensorFlow with its default threads, as a single process does: with
fewer threads some of its kernels sum in another order, and scores would differ in their last
bits from a single-process run's.

A cluster file describes a dask-jobqueue cluster, in the spirit of PlantCV's workflow
configuration::

    jobqueue: slurm          # slurm, htcondor or pbs
    jobs: 4                  # how many batch jobs to start (each runs one worker)
    cores: 8                 # per job
    memory: 32GB             # per job
    walltime: "02:00:00"
    queue: normal            # any other option of dask_jobqueue's SLURMCluster / HTCondorCluster / PBSCluster
    job_extra_directives: ["--gres=gpu:1"]

:func:`job_script` gives the batch script it would submit.
"""
from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ModelSpec", "ClusterError", "JOBQUEUES", "parse_cluster", "check_cluster", "read_cluster_file",
           "job_script", "open_client", "worker_model", "predict_on_cluster"]

logger = logging.getLogger(__name__)

JOBQUEUES = {"slurm": "SLURMCluster", "htcondor": "HTCondorCluster", "pbs": "PBSCluster"}
INSTALL = "pip install 'leafseg[cluster]'"
CHUNK_SIZE = 4   # images per task
RETRIES = 2      # reruns of a task that raised


class ClusterError(ValueError):
    """A --cluster value, a cluster file or a missing package; the message says which and what to do."""


@dataclass(frozen=True)
class ModelSpec:
    """The model of a run, as a worker builds it (picklable; see leafseg.models.loading)."""

    weights: str
    config: str | None = None
    min_score: float | None = None
    # Images per model call; None: the worker's default for its device (leafseg.inference.predict.default_batch_size).
    batch_size: int | None = None
    precision: str = "float32"   # see leafseg.precision.PRECISIONS
    # {attribute: value} on top of the config (--set); out of the hash, as values may be lists.
    overrides: dict = field(default_factory=dict, hash=False)
    # What runs the network on the workers: "tensorflow" or "openvino" (leafseg.models.runtime;
    # the client chooses, so that every worker runs what the run's settings record).
    runtime: str = "tensorflow"

    def config_object(self):
        from leafseg.models.loading import resolve_inference

        return resolve_inference(self.weights, self.config, self.min_score, self.overrides)[0]

    def weights_path(self):
        from leafseg.models.loading import resolve_weights

        return resolve_weights(self.weights)

    def weights_id(self):
        from leafseg.inference.results import file_fingerprint

        return file_fingerprint(self.weights_path())

    def load(self, model_dir=None):
        from leafseg.models.loading import load_inference_model

        return load_inference_model(self.weights, self.config, self.min_score, model_dir=model_dir,
                                    precision=self.precision, overrides=self.overrides, runtime=self.runtime)[0]


def _need(module, what):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ClusterError(f"{what} needs {module.split('.')[0].replace('_', '-')}, which is not installed: "
                           f"{INSTALL}") from None


def parse_cluster(value):
    """A --cluster value -> ("local", N), ("address", "tcp://...") or ("file", Path)."""
    text = str(value)
    if text.startswith("local:"):
        count = text.split(":", 1)[1]
        if not count.isdigit() or int(count) < 1:
            raise ClusterError(f"--cluster {text}: expected local:N with N >= 1 worker processes")
        return "local", int(count)
    if "://" in text:
        return "address", text
    path = Path(text)
    if path.suffix.lower() in (".yaml", ".yml"):
        if not path.is_file():
            raise ClusterError(f"--cluster {text}: cluster file not found")
        return "file", path
    raise ClusterError(f"--cluster {text}: expected local:N, a scheduler address (tcp://HOST:PORT) or a "
                       "cluster file (.yaml)")


def check_cluster(value):
    """Raise :class:`ClusterError` when a --cluster value is malformed or its packages are missing."""
    kind, target = parse_cluster(value)
    _need("distributed", "--cluster")
    if kind == "file":
        read_cluster_file(target)


def read_cluster_file(path):
    """A cluster file -> (dask_jobqueue cluster class, its keyword arguments, jobs)."""
    import yaml

    path = Path(path)
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ClusterError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(spec, dict):
        raise ClusterError(f"{path}: expected a mapping of options (jobqueue, jobs, cores, memory, ...)")
    spec = dict(spec)
    kind = str(spec.pop("jobqueue", "")).lower()
    if kind not in JOBQUEUES:
        raise ClusterError(f"{path}: jobqueue must be one of {', '.join(JOBQUEUES)}, got {kind or 'nothing'!r}")
    jobs = spec.pop("jobs", 1)
    if not isinstance(jobs, int) or jobs < 1:
        raise ClusterError(f"{path}: jobs must be a whole number >= 1, got {jobs!r}")
    missing = [key for key in ("cores", "memory") if key not in spec]
    if missing:
        raise ClusterError(f"{path}: {' and '.join(missing)} missing (per job, e.g. cores: 8, memory: 32GB)")
    jobqueue = _need("dask_jobqueue", f"{path} (a {kind} cluster)")
    return getattr(jobqueue, JOBQUEUES[kind]), spec, jobs


def _jobqueue_cluster(path):
    cls, options, jobs = read_cluster_file(path)
    try:
        return cls(**options), jobs
    except (TypeError, ValueError) as err:
        raise ClusterError(f"{path}: {cls.__name__} does not take these options ({err})") from None


def job_script(path) -> str:
    """The batch script a cluster file would submit for each job."""
    cluster, _ = _jobqueue_cluster(path)
    with cluster:
        return cluster.job_script()


@contextlib.contextmanager
def open_client(value):
    """A Dask client for a --cluster value, and the cluster it started (closed on exit)."""
    kind, target = parse_cluster(value)
    distributed = _need("distributed", "--cluster")
    with contextlib.ExitStack() as stack:
        if kind == "local":
            cluster = stack.enter_context(distributed.LocalCluster(
                n_workers=target, threads_per_worker=1, processes=True, dashboard_address=None))
            client = stack.enter_context(distributed.Client(cluster))
        elif kind == "address":
            try:
                client = stack.enter_context(distributed.Client(target, timeout="30s"))
            except OSError as err:
                raise ClusterError(f"--cluster {target}: cannot reach the scheduler ({err})") from None
        else:
            cluster, jobs = _jobqueue_cluster(target)
            stack.enter_context(cluster)
            cluster.scale(jobs=jobs)
            client = stack.enter_context(distributed.Client(cluster))
        yield client


# A worker process's models, by spec: loaded on its first chunk, kept for the others.
_MODELS = {}
_LOCK = threading.Lock()


def worker_model(spec: ModelSpec, model_dir):
    """The model of ``spec`` in this process: built on the first call, kept for the next ones."""
    with _LOCK:
        if spec not in _MODELS:
            _MODELS[spec] = spec.load(model_dir)
        return _MODELS[spec]


def predict_on_cluster(cluster, spec: ModelSpec, todo, options, task, on_done=None, chunk_size=CHUNK_SIZE):
    """Predict ``todo`` [(path, name)] on ``cluster`` (a --cluster value) in chunks: each is a
    call ``task(spec, chunk, options)`` on a worker (:func:`leafseg.inference.predict.predict_chunk`),
    returning {name: outcome}. Returns the outcomes of all chunks; a chunk that fails for good
    is logged with its images, which get no outcome."""
    distributed = _need("distributed", "--cluster")
    outcomes = {}
    chunks = [[(str(path), name) for path, name in todo[i:i + chunk_size]] for i in range(0, len(todo), chunk_size)]
    if not chunks:
        return outcomes
    with open_client(cluster) as client:
        futures = {client.submit(task, spec, chunk, options, retries=RETRIES, pure=False): chunk
                   for chunk in chunks}
        for future in distributed.as_completed(futures):
            chunk = futures[future]
            try:
                result = future.result()
            except Exception as err:  # noqa: BLE001 - reported by name, the other chunks go on
                logger.error("not predicted (%s: %s): %s", type(err).__name__, err,
                             ", ".join(str(path) for path, _ in chunk))
                continue
            outcomes.update(result)
            if on_done:
                for path, name in chunk:
                    if name in result:
                        on_done(Path(path), name, result[name])
    return outcomes
