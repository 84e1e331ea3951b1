"""The cardiac_mi MONAI Label app's tasks (MONAI Label imports this folder as the package ``lib``)."""
