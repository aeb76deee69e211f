"""Install leafseg (the leaf application) and mrcnn (the Mask R-CNN library) together.

    pip install -e .              # library and command-line tools
    pip install -e ".[test]"      # + what the tests need (they also run the notebooks)
    pip install -e ".[notebooks]" # + JupyterLab and papermill, to open or run the notebooks
    pip install -e ".[gpu]"       # + TensorFlow's CUDA libraries (Linux, NVIDIA GPU)
    pip install -e ".[openvino]"  # + OpenVINO, an optional CPU inference runtime (mrcnn.openvino)
"""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent


def read_requirements():
    lines = (HERE / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


setup(
    name="leafseg",
    version="0.1.0",
    description="Leaf instance segmentation for plant phenotyping: Mask R-CNN on TensorFlow 2 / Keras 3",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    # The preset YAMLs live once, in the repository's configs/; installed, they are the package
    # leafseg.configs (leafseg.config.preset_dir finds either).
    packages=find_packages(include=["mrcnn", "mrcnn.*", "leafseg", "leafseg.*"]) + ["leafseg.configs"],
    package_dir={"leafseg.configs": "configs"},
    install_requires=read_requirements(),
    extras_require={
        # The tests also cover the cluster extra (a LocalCluster, a SLURM job script), and open
        # report.html in headless Chromium through Selenium (Chromium itself: apt, see .ci/run),
        # and the OpenVINO runtime (tests/mrcnn/test_openvino.py runs, not skips, in CI).
        "test": ["pytest>=8", "pytest-xdist>=3.5", "nbclient>=0.10", "nbformat>=5.10", "ipykernel>=6.29",
                 "dask[distributed]>=2024.8", "dask-jobqueue>=0.9", "selenium>=4.20", "openvino>=2025.0"],
        # leafseg predict --cluster (leafseg.inference.cluster): a local, remote or SLURM / HTCondor / PBS Dask cluster.
        "cluster": ["dask[distributed]>=2024.8", "dask-jobqueue>=0.9"],
        "notebooks": ["jupyterlab>=4", "papermill>=2.5"],
        "gpu": ["tensorflow[and-cuda]>=2.21,<2.22"],
        # mrcnn.openvino: OpenVINO as the inference runtime on CPUs; leafseg export --format openvino.
        "openvino": ["openvino>=2025.0"],
    },
    package_data={"leafseg": ["models/*.weights.h5"], "leafseg.configs": ["*.yaml"]},
    entry_points={
        "console_scripts": ["leafseg=leafseg.cli:main"],
        # Pretrained weights by name: MaskRCNN.load_weights("leaf-small") (mrcnn.weights.resolve_named).
        "mrcnn.weights": ["leaf-small=leafseg.models.zoo:leaf_small"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Image Recognition",
        "Topic :: Scientific/Engineering :: Bio-Informatics",
    ],
)
