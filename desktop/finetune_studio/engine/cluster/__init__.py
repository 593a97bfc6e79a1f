"""Engine layer: handing a recipe to a cluster.

A *bundle* is a folder to copy to the cluster: the recipe, a manifest of the
dataset (every picture's relative path, size and SHA-256, so the copy there can be
verified), and launch files for torchrun (one node), SLURM (several nodes) and
SkyPilot. The launch files call PyTorch's own ``torchrun``; nothing here schedules
anything.

- ``manifest``: hashing a dataset into a manifest, reading and writing it;
- ``verify``: checking a copy of the dataset against a manifest;
- ``launch_files``: the text of the launch files and the bundle's README;
- ``bundle``: writing the folder, as a cancellable task.
"""
