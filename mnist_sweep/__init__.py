"""mnist-sweep: Keras experiment sweeps on MNIST from one YAML file."""

__version__ = "0.1.0"
