"""tricks: fastai callbacks and model transforms for the training tricks of small CNNs on CIFAR-10."""

__version__ = "0.1.0"
