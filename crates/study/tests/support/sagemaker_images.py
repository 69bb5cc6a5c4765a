"""Prints the Hugging Face LLM image table of the installed `sagemaker`
package in the shape of crates/study/data/huggingface-llm-images.json, for
the version named on the command line. Exit 3 when the package is missing.

The package's JSON is read as a file: `pip install --no-deps sagemaker` is
enough (importing the SDK would need its many dependencies).
"""

import importlib.util
import json
import os
import sys

spec = importlib.util.find_spec("sagemaker")
if spec is None or not spec.submodule_search_locations:
    sys.exit(3)
root = list(spec.submodule_search_locations)[0]
with open(os.path.join(root, "image_uri_config", "huggingface-llm.json")) as f:
    table = json.load(f)["inference"]
version = sys.argv[1]
v = table["versions"][version]
print(
    json.dumps(
        {
            "repository": v["repository"],
            "tag": f'{v["tag_prefix"]}-gpu-{v["py_versions"][0]}-{v["container_version"]["gpu"]}',
            "registries": v["registries"],
        }
    )
)
