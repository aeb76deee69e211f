"""The leaf presets, YAML files that setup.py installs as the package data of ``leafseg.configs``."""
