#!/usr/bin/env python3
"""Serial reference consumer for the drain benchmark (benches/drain.rs).

What a user would otherwise run instead of nodereaper: one loop, no
verification, no backup.

    receive 10 (long poll 1 s)
    for each message: GET /nodes/<id>, DELETE /nodes/<id>, DELETE /clients/<id>,
                      DeleteMessage

where <id> is the instance id of the classic SNS-wrapped Auto Scaling
termination notification (nodes and clients are named after the instance
id). Chef requests are signed with protocol 1.3 (RSASSA-PKCS1-v1_5/SHA-256,
the `cryptography` package, i.e. OpenSSL) through one keep-alive
`requests.Session`; SQS is boto3. Uses only the stack's moto virtualenv,
which has boto3, requests and cryptography.

Usage (the benchmark runs it with the venv's python):

    serial_reference.py CHEF_URL CLIENT_NAME KEY_PATH QUEUE_URL COUNT

AWS endpoint, region and credentials come from the environment
(AWS_ENDPOINT_URL etc.). Prints `READY` once set up (imports, key, clients),
then, after COUNT messages were handled, one JSON line:
{"handled": N, "wall_s": ..., "cpu_s": ...} where wall and CPU cover the
work only (from READY to the last DeleteMessage).
"""

import base64
import datetime
import hashlib
import json
import resource
import sys
import time
import urllib.parse

import boto3
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding


def cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Chef:
    def __init__(self, url, client, key_path):
        self.url = url.rstrip("/")
        self.base_path = urllib.parse.urlparse(self.url).path
        self.client = client
        with open(key_path, "rb") as f:
            self.key = serialization.load_pem_private_key(f.read(), password=None)
        self.session = requests.Session()

    def request(self, method, path):
        full_path = self.base_path + path
        ts = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        content_hash = base64.b64encode(hashlib.sha256(b"").digest()).decode()
        canonical = (
            f"Method:{method}\nPath:{full_path}\nX-Ops-Content-Hash:{content_hash}\n"
            f"X-Ops-Sign:version=1.3\nX-Ops-Timestamp:{ts}\nX-Ops-UserId:{self.client}\n"
            f"X-Ops-Server-API-Version:1"
        )
        sig = base64.b64encode(
            self.key.sign(canonical.encode(), padding.PKCS1v15(), hashes.SHA256())
        ).decode()
        headers = {
            "Accept": "application/json",
            "X-Chef-Version": "18.0.0",
            "X-Ops-Server-API-Version": "1",
            "X-Ops-Sign": "algorithm=sha256;version=1.3;",
            "X-Ops-Userid": self.client,
            "X-Ops-Timestamp": ts,
            "X-Ops-Content-Hash": content_hash,
        }
        for i in range(0, len(sig), 60):
            headers[f"X-Ops-Authorization-{i // 60 + 1}"] = sig[i : i + 60]
        return self.session.request(method, self.url + path, headers=headers)


def instance_id(body):
    envelope = json.loads(body)
    return json.loads(envelope["Message"])["EC2InstanceId"]


def main():
    chef_url, client, key_path, queue_url, count = sys.argv[1:6]
    count = int(count)
    chef = Chef(chef_url, client, key_path)
    sqs = boto3.client("sqs")
    print("READY", flush=True)
    started, cpu0 = time.monotonic(), cpu_seconds()
    handled = 0
    while handled < count:
        out = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for m in out.get("Messages", []):
            name = instance_id(m["Body"])
            chef.request("GET", f"/nodes/{name}")
            chef.request("DELETE", f"/nodes/{name}")
            chef.request("DELETE", f"/clients/{name}")
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
            handled += 1
    wall, cpu = time.monotonic() - started, cpu_seconds() - cpu0
    print(json.dumps({"handled": handled, "wall_s": wall, "cpu_s": cpu}), flush=True)


if __name__ == "__main__":
    main()
