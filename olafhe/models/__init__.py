"""CIFAR ResNets (option-A shortcuts) and a small CNN for fast tests."""
