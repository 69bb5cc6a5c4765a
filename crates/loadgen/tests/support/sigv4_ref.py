"""botocore's SigV4 signature for each request on stdin (a JSON list), the
reference servebench's signer must match. Exit 3 when botocore is missing.

Each request: {method, url, headers: [[name, value]], body: [byte, ...],
access_key, secret_key, token (or null), service, region, time: Unix seconds}.
Prints a JSON list of {authorization, x_amz_date, x_amz_security_token}.
"""

import datetime
import json
import sys
from unittest import mock

try:
    import botocore.auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
except ImportError:
    sys.exit(3)


def sign(r):
    request = AWSRequest(
        method=r["method"],
        url=r["url"],
        headers=dict(r["headers"]),
        data=bytes(r["body"]),
    )
    creds = Credentials(r["access_key"], r["secret_key"], r["token"])
    now = datetime.datetime.fromtimestamp(r["time"], datetime.timezone.utc).replace(tzinfo=None)
    with mock.patch.object(botocore.auth, "get_current_datetime", lambda: now):
        botocore.auth.SigV4Auth(creds, r["service"], r["region"]).add_auth(request)
    return {
        "authorization": request.headers["Authorization"],
        "x_amz_date": request.headers["X-Amz-Date"],
        "x_amz_security_token": request.headers.get("X-Amz-Security-Token"),
    }


print(json.dumps([sign(r) for r in json.load(sys.stdin)]))
