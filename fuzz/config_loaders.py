"""Atheris: any YAML or TOML file, dynamic or static, loads or raises ConfigLoadError naming it.

    python fuzz/config_loaders.py -atheris_runs=200000    # first byte picks the loader
"""

import tempfile

from _entry import load_properties, run

properties = load_properties("test_config_loaders_fuzz")

if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="switchyard-fuzz-") as scratch:
        run(lambda data: properties.check_one_input(data, scratch),
            [bytes([kind]) + content for kind in range(len(properties.LOADERS))
             for content in properties.REGRESSIONS])
