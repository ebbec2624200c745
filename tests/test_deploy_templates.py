"""The CloudFormation templates lint clean and keep the properties a private diary needs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
TEMPLATES = sorted(DEPLOY.glob("*.yaml"))


def template(name: str) -> dict[str, Any]:
    parsed, problems = decode(str(DEPLOY / name))
    assert not problems, problems
    return parsed


def resources_of(name: str, resource_type: str) -> list[dict[str, Any]]:
    return [
        resource["Properties"]
        for resource in template(name)["Resources"].values()
        if resource["Type"] == resource_type
    ]


def test_all_three_stacks_are_there():
    assert {p.name for p in TEMPLATES} >= {
        "network-data.yaml",
        "apprunner.yaml",
        "ecs-express.yaml",
    }


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_cfn_lint_passes(path: Path):
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_database_is_private_encrypted_and_its_password_managed():
    (database,) = resources_of("network-data.yaml", "AWS::RDS::DBInstance")
    assert database["PubliclyAccessible"] is False
    assert database["StorageEncrypted"] is True
    assert database["ManageMasterUserPassword"] is True
    assert "MasterUserPassword" not in database


def test_the_database_admits_postgres_only_from_the_service():
    parsed = template("network-data.yaml")
    database_group = parsed["Resources"]["DatabaseSecurityGroup"]["Properties"]
    (rule,) = database_group["SecurityGroupIngress"]
    assert (rule["FromPort"], rule["ToPort"], rule["IpProtocol"]) == (5432, 5432, "tcp")
    assert rule["SourceSecurityGroupId"] == {"Ref": "ServiceSecurityGroup"}
    assert "CidrIp" not in rule


def test_s3_is_reachable_from_the_private_subnets_through_a_gateway_endpoint():
    endpoints = resources_of("network-data.yaml", "AWS::EC2::VPCEndpoint")
    gateway = [e for e in endpoints if e.get("VpcEndpointType") == "Gateway"]
    assert len(gateway) == 1
    assert gateway[0]["ServiceName"] == {"Fn::Sub": "com.amazonaws.${AWS::Region}.s3"}
    assert gateway[0]["RouteTableIds"] == [{"Ref": "PrivateRouteTable"}]


def test_the_bucket_is_private_and_encrypted():
    (bucket,) = resources_of("network-data.yaml", "AWS::S3::Bucket")
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert len(bucket["PublicAccessBlockConfiguration"]) == 4
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]


def trusted_services(name: str) -> set[str]:
    return {
        role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["Service"]
        for role in resources_of(name, "AWS::IAM::Role")
    }


def test_app_runner_roles_trust_the_right_services():
    assert trusted_services("apprunner.yaml") == {
        "tasks.apprunner.amazonaws.com",
        "build.apprunner.amazonaws.com",
    }


def test_app_runner_serves_8080_checks_healthz_and_egresses_through_the_vpc():
    (service,) = resources_of("apprunner.yaml", "AWS::AppRunner::Service")
    image = service["SourceConfiguration"]["ImageRepository"]
    assert image["ImageConfiguration"]["Port"] == "8080"
    assert service["SourceConfiguration"]["AutoDeploymentsEnabled"] is True
    assert service["HealthCheckConfiguration"]["Path"] == "/healthz"
    assert service["HealthCheckConfiguration"]["Protocol"] == "HTTP"
    assert service["NetworkConfiguration"]["EgressConfiguration"]["EgressType"] == "VPC"
    secrets = {s["Name"] for s in image["ImageConfiguration"]["RuntimeEnvironmentSecrets"]}
    assert secrets == {"DB_SECRET", "SECRET_KEY"}


def test_ecs_express_runs_the_same_image_privately_with_the_same_secrets():
    (service,) = resources_of("ecs-express.yaml", "AWS::ECS::ExpressGatewayService")
    assert service["HealthCheckPath"] == "/healthz"
    assert service["PrimaryContainer"]["ContainerPort"] == 8080
    assert {s["Name"] for s in service["PrimaryContainer"]["Secrets"]} == {
        "DB_SECRET",
        "SECRET_KEY",
    }
    subnets = service["NetworkConfiguration"]["Subnets"]
    assert all("PrivateSubnet" in str(subnet) for subnet in subnets)


@pytest.mark.parametrize("name", ["apprunner.yaml", "ecs-express.yaml"])
def test_the_service_may_touch_only_its_bucket_and_secrets(name: str):
    for role in resources_of(name, "AWS::IAM::Role"):
        for policy in role.get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                assert statement["Resource"] != "*"
                assert "*" not in statement["Action"]
