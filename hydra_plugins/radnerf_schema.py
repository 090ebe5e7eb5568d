"""Registers radnerf's config schema in Hydra's ConfigStore when Hydra scans for plugins.

DVC composes ``conf/params.yaml`` into ``params.yaml`` in its own process on ``dvc exp run -S`` (Hydra
enabled in ``.dvc/config``); ``conf/config.yaml`` starts from the ``radnerf_schema`` structured config, which
only exists once :func:`radnerf.config.register_configs` ran. DVC loads Hydra plugins from the repository
root (``hydra.plugins_path``), and Hydra imports every module of the ``hydra_plugins`` namespace package it
finds, so importing this one registers the schema. It defines no plugin.
"""

from radnerf.config import register_configs

register_configs()
