"""Install xlt_jax: `pip install -e .[test]` (add `tfds` on TPU VMs, `hf` for interop, `parse` for UDPipe)."""

from setuptools import find_packages, setup

CORE = [
    "jax>=0.10.0",
    "flax>=0.12.0",
    "optax>=0.2.5",
    "orbax-checkpoint>=0.12.0",
    "ml-collections>=1.0.0",
    # Only clu.parameter_overview (the parameter/sharding table at the start of training): clu.metric_writers
    # and clu.periodic_actions need TensorFlow (README, "Libraries").
    "clu>=0.0.12",
    "sentencepiece>=0.2.0",
    "numpy>=2.0",
    "scipy>=1.13",
    "seqeval>=1.2.2",
    "absl-py>=2.0",
    "etils[epath]>=1.5",  # epath for Orbax checkpoint directories (also an orbax dependency)
    # clu.metric_writers needs TensorFlow; tensorboardX writes the same event files without it.
    "tensorboardX>=2.6",
    "matplotlib>=3.8",
    "POT>=0.9.4",
]

# gs:// workdirs (xlt_jax/storage.py): gcsfs is epath's Cloud Storage backend without TensorFlow; Orbax lists and
# deletes checkpoint steps on gs:// through google-cloud-storage. TensorStore writes the arrays by itself.
GCS = ["gcsfs", "google-cloud-storage>=2.0"]

EXTRAS = {
    "test": ["pytest>=8", "pytest-xdist>=3.5", "hypothesis>=6.100", "ruff>=0.6"],
    # tfds: sources read prepared array_record data through tfds.data_source, which needs no TensorFlow.
    "tfds": ["tensorflow-datasets>=4.9.6"],
    "hf": ["torch==2.13.0", "transformers>=4.45"],
    "gcs": GCS,
    # libtpu as `jax[tpu]` pins it for the installed jax: compiles TPU programs ahead of time on any machine.
    "tpu": ["jax[tpu]", *GCS],
    # parse: UDPipe 1 parses text for syntax:LANG where no gold trees exist (models trained here, offline);
    # Stanza, the paper's parser, is not an extra: its models download at run time (install it on a TPU VM).
    "parse": ["ufal.udpipe>=1.3"],
}

setup(
    name="xlt_jax",
    version="0.1.0",
    description="JAX/Flax TPU-native pretraining and evaluation for cross-lingual transfer research",
    python_requires=">=3.11",
    packages=find_packages(include=["xlt_jax", "xlt_jax.*"]),
    package_data={"xlt_jax.data": ["manifest.json"]},
    install_requires=CORE,
    extras_require=EXTRAS,
)
