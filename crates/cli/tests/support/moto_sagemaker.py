"""moto's server mode on loopback, for SageMaker's control plane.

`moto_sagemaker.py serve` prints `listening PORT` once ready and serves until
killed. `moto_sagemaker.py list URL REGION` prints the models, endpoint
configs and endpoints that exist there, as JSON, read with boto3.
Exit 3 when moto or boto3 is missing.
"""

import json
import sys

try:
    import boto3
    from moto.server import ThreadedMotoServer
except ImportError:
    sys.exit(3)

if sys.argv[1] == "serve":
    import logging
    import threading

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer("127.0.0.1", 0, verbose=False)
    server.start()
    print(f"listening {server.get_host_and_port()[1]}", flush=True)
    threading.Event().wait()
else:
    url, region = sys.argv[2], sys.argv[3]
    c = boto3.client(
        "sagemaker",
        region_name=region,
        endpoint_url=url,
        aws_access_key_id="lister",
        aws_secret_access_key="lister",
    )
    print(
        json.dumps(
            {
                "models": [m["ModelName"] for m in c.list_models()["Models"]],
                "endpoint_configs": [
                    e["EndpointConfigName"] for e in c.list_endpoint_configs()["EndpointConfigs"]
                ],
                "endpoints": [e["EndpointName"] for e in c.list_endpoints()["Endpoints"]],
            }
        )
    )
