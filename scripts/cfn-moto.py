#!/usr/bin/env python3
"""Creates packaging/cloudformation/nodereaper.yaml as a stack in moto.

Usage: cfn-moto.py TEMPLATE STACK_NAME [KEY=VALUE ...]   (parameters)
Uses AWS_ENDPOINT_URL (moto) and prints one JSON object on stdout: the stack
status, its outputs, and each logical resource with its physical id. Run
with the python of the moto virtualenv (it has boto3). Tests only: never
point it at a real account.
"""
import json
import os
import sys
import time

import boto3

endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
if not endpoint.startswith("http://127.0.0.1:"):
    sys.exit(f"refusing to run against {endpoint!r}: moto on 127.0.0.1 only")

template, name, *params = sys.argv[1:]
cfn = boto3.client("cloudformation", endpoint_url=endpoint, region_name=os.environ.get("AWS_REGION", "us-east-1"))
with open(template) as f:
    body = f.read()
parameters = [
    {"ParameterKey": k, "ParameterValue": v}
    for k, v in (p.split("=", 1) for p in params)
]
cfn.create_stack(StackName=name, TemplateBody=body, Parameters=parameters,
                 Capabilities=["CAPABILITY_IAM"])
deadline = time.time() + 60
while True:
    stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
    if not stack["StackStatus"].endswith("IN_PROGRESS") or time.time() > deadline:
        break
    time.sleep(0.5)
resources = cfn.list_stack_resources(StackName=name)["StackResourceSummaries"]


def details(r):
    """What the created resource looks like in moto's own service backend."""
    kind, pid = r["ResourceType"], r.get("PhysicalResourceId")
    client = lambda svc: boto3.client(svc, endpoint_url=endpoint, region_name=cfn.meta.region_name)
    if kind == "AWS::SQS::Queue":
        return client("sqs").get_queue_attributes(QueueUrl=pid, AttributeNames=["All"])["Attributes"]
    if kind == "AWS::Lambda::Function":
        c = client("lambda").get_function_configuration(FunctionName=pid)
        return {k: c.get(k) for k in ("Runtime", "Handler", "Architectures", "Timeout", "Environment")}
    if kind == "AWS::Lambda::EventSourceMapping":
        m = client("lambda").get_event_source_mapping(UUID=pid)
        return {k: m.get(k) for k in ("EventSourceArn", "FunctionArn", "BatchSize", "FunctionResponseTypes")}
    if kind == "AWS::Events::Rule":
        rule = client("events").describe_rule(Name=pid)
        targets = client("events").list_targets_by_rule(Rule=pid)["Targets"]
        return {"EventPattern": json.loads(rule["EventPattern"]), "Targets": [t["Arn"] for t in targets]}
    if kind == "AWS::IAM::Role":
        iam = client("iam")
        role = iam.get_role(RoleName=pid)["Role"]
        policies = {n: iam.get_role_policy(RoleName=pid, PolicyName=n)["PolicyDocument"]
                    for n in iam.list_role_policies(RoleName=pid)["PolicyNames"]}
        return {"AssumeRolePolicyDocument": role["AssumeRolePolicyDocument"], "Policies": policies}
    return None


print(json.dumps({
    "status": stack["StackStatus"],
    "reason": stack.get("StackStatusReason"),
    "outputs": {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])},
    "resources": {
        r["LogicalResourceId"]: {"type": r["ResourceType"], "id": r.get("PhysicalResourceId"),
                                  "status": r["ResourceStatus"],
                                  "details": details(r) if r["ResourceStatus"] == "CREATE_COMPLETE" else None}
        # moto lists the resources of types it does not implement with an
        # empty logical id; leave them out.
        for r in resources if r["LogicalResourceId"]
    },
}, indent=1))
