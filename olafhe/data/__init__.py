"""Datasets: CIFAR-10 from npz files or a torchvision folder, and the data directory."""
