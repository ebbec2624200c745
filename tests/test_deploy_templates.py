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

# cfn-lint's console entry point, run by this interpreter: no dependence on PATH or bin/.
CFN_LINT = [sys.executable, "-c", "import sys; from cfnlint.runner import main; sys.exit(main())"]


def template(name: str) -> dict[str, Any]:
    """The template as data; cfn-lint's decoder understands !Ref, !Sub and friends."""
    parsed, problems = decode(str(DEPLOY / name))
    assert not problems, problems
    return parsed


def resource(name: str, logical_id: str) -> dict[str, Any]:
    return template(name)["Resources"][logical_id]


def properties_of(name: str, resource_type: str) -> list[dict[str, Any]]:
    return [
        each["Properties"]
        for each in template(name)["Resources"].values()
        if each["Type"] == resource_type
    ]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def trusted_service(role: dict[str, Any]) -> str:
    (statement,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Action"] == "sts:AssumeRole"
    return statement["Principal"]["Service"]


def test_all_three_stacks_are_there():
    assert {p.name for p in TEMPLATES} >= {
        "network-data.yaml",
        "apprunner.yaml",
        "ecs-express.yaml",
    }


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_cfn_lint_finds_no_error_or_warning(path: Path):
    """A template CloudFormation would reject fails here, not halfway through a deploy."""
    result = subprocess.run(
        [*CFN_LINT, str(path)], capture_output=True, text=True, check=False, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- the shared stack ------------------------------------------------------------------


def test_the_database_is_private_encrypted_and_its_password_never_in_a_template():
    """Only the VPC reaches it, its disk is encrypted, and RDS keeps the password."""
    (database,) = properties_of("network-data.yaml", "AWS::RDS::DBInstance")
    assert database["Engine"] == "postgres"
    assert database["PubliclyAccessible"] is False
    assert database["StorageEncrypted"] is True
    assert database["ManageMasterUserPassword"] is True
    assert "MasterUserPassword" not in database
    assert database["BackupRetentionPeriod"] >= 1


def test_the_database_admits_postgres_only_from_the_service_security_group():
    """Port 5432 opens to the service's security group, never to an address range."""
    group = resource("network-data.yaml", "DatabaseSecurityGroup")["Properties"]
    (rule,) = group["SecurityGroupIngress"]
    assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 5432, 5432)
    assert rule["SourceSecurityGroupId"] == {"Ref": "ServiceSecurityGroup"}
    assert not {"CidrIp", "CidrIpv6", "SourcePrefixListId"} & rule.keys()


def test_every_route_table_reaches_s3_through_the_gateway_endpoint():
    """With VPC egress, S3 without an endpoint or NAT hangs: the original service's bug."""
    parsed = template("network-data.yaml")
    route_tables = {
        logical_id
        for logical_id, each in parsed["Resources"].items()
        if each["Type"] == "AWS::EC2::RouteTable"
    }
    (endpoint,) = [
        each
        for each in properties_of("network-data.yaml", "AWS::EC2::VPCEndpoint")
        if each.get("VpcEndpointType") == "Gateway"
    ]
    assert endpoint["ServiceName"] == {"Fn::Sub": "com.amazonaws.${AWS::Region}.s3"}
    attached = {
        ref["Ref"] if "Ref" in ref else ref["Fn::If"][1]["Ref"] for ref in endpoint["RouteTableIds"]
    }
    assert attached == route_tables


def test_the_photo_bucket_is_private_encrypted_and_tls_only():
    (bucket,) = properties_of("network-data.yaml", "AWS::S3::Bucket")
    block = bucket["PublicAccessBlockConfiguration"]
    assert block == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert bucket["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in {"AES256", "aws:kms"}
    (policy,) = properties_of("network-data.yaml", "AWS::S3::BucketPolicy")
    (deny,) = policy["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_the_shared_stack_exports_what_the_service_stacks_import():
    outputs = template("network-data.yaml")["Outputs"]
    for name in (
        "VpcId",
        "PrivateSubnet1",
        "PrivateSubnet2",
        "ServiceSecurityGroupId",
        "DatabaseEndpoint",
        "DatabasePort",
        "DatabaseName",
        "DatabaseSecretArn",
        "BucketName",
        "BucketArn",
        "RepositoryUri",
    ):
        assert outputs[name]["Export"]["Name"] == {"Fn::Sub": f"${{AWS::StackName}}-{name}"}
    assert outputs["DatabaseSecretArn"]["Value"] == {
        "Fn::GetAtt": ["Database", "MasterUserSecret.SecretArn"]
    }


# --- App Runner ------------------------------------------------------------------------


def test_app_runner_roles_trust_the_right_services():
    """The instance role is the running app; the access role only pulls from ECR."""
    assert trusted_service(resource("apprunner.yaml", "InstanceRole")) == (
        "tasks.apprunner.amazonaws.com"
    )
    access = resource("apprunner.yaml", "AccessRole")
    assert trusted_service(access) == "build.apprunner.amazonaws.com"
    assert access["Properties"]["ManagedPolicyArns"] == [
        "arn:aws:iam::aws:policy/service-role/AWSAppRunnerServicePolicyForECRAccess"
    ]


def test_app_runner_serves_8080_checks_healthz_and_egresses_through_the_vpc():
    (service,) = properties_of("apprunner.yaml", "AWS::AppRunner::Service")
    image = service["SourceConfiguration"]["ImageRepository"]["ImageConfiguration"]
    assert image["Port"] == "8080"
    assert service["SourceConfiguration"]["AutoDeploymentsEnabled"] is True
    assert service["HealthCheckConfiguration"]["Protocol"] == "HTTP"
    assert service["HealthCheckConfiguration"]["Path"] == "/healthz"
    egress = service["NetworkConfiguration"]["EgressConfiguration"]
    assert egress["EgressType"] == "VPC"
    assert egress["VpcConnectorArn"] == {"Fn::GetAtt": ["VpcConnector", "VpcConnectorArn"]}
    assert {s["Name"] for s in image["RuntimeEnvironmentSecrets"]} == {"DB_SECRET", "SECRET_KEY"}
    env = {v["Name"]: v["Value"] for v in image["RuntimeEnvironmentVariables"]}
    assert env["MIGRATE_ON_START"] == "true"
    assert {"BUCKET", "AWS_REGION", "DB_ENDPOINT", "DB_PORT", "DB_NAME"} <= env.keys()
    assert_follows_password_rotation("apprunner.yaml", "InstanceRole", env)


def assert_follows_password_rotation(template: str, role: str, env: dict) -> None:
    """DB_SECRET_ARN names the injected secret, and the running service may read it."""
    (injected,) = [
        resource_ref for resource_ref in secrets_of(template) if resource_ref["Name"] == "DB_SECRET"
    ]
    assert env["DB_SECRET_ARN"] == injected.get("Value", injected.get("ValueFrom"))
    readable = [
        statement["Resource"]
        for policy in resource(template, role)["Properties"]["Policies"]
        for statement in policy["PolicyDocument"]["Statement"]
        if "secretsmanager:GetSecretValue" in as_list(statement["Action"])
    ]
    assert any(env["DB_SECRET_ARN"] in as_list(resources) for resources in readable)


def secrets_of(template: str) -> list[dict]:
    if template == "apprunner.yaml":
        (service,) = properties_of(template, "AWS::AppRunner::Service")
        image = service["SourceConfiguration"]["ImageRepository"]["ImageConfiguration"]
        return image["RuntimeEnvironmentSecrets"]
    (service,) = properties_of(template, "AWS::ECS::ExpressGatewayService")
    return service["PrimaryContainer"]["Secrets"]


# --- ECS Express Mode ------------------------------------------------------------------


def test_ecs_express_runs_the_same_image_on_8080_with_the_same_secrets():
    (service,) = properties_of("ecs-express.yaml", "AWS::ECS::ExpressGatewayService")
    assert service["HealthCheckPath"] == "/healthz"
    container = service["PrimaryContainer"]
    assert container["ContainerPort"] == 8080
    assert {s["Name"] for s in container["Secrets"]} == {"DB_SECRET", "SECRET_KEY"}
    env = {v["Name"]: v["Value"] for v in container["Environment"]}
    assert env["MIGRATE_ON_START"] == "true"
    assert {"BUCKET", "AWS_REGION", "DB_ENDPOINT", "DB_PORT", "DB_NAME"} <= env.keys()
    assert_follows_password_rotation("ecs-express.yaml", "TaskRole", env)
    (group,) = service["NetworkConfiguration"]["SecurityGroups"]
    assert group == {"Fn::ImportValue": {"Fn::Sub": "${SharedStackName}-ServiceSecurityGroupId"}}


def test_ecs_express_roles_trust_the_right_services():
    assert trusted_service(resource("ecs-express.yaml", "InfrastructureRole")) == (
        "ecs.amazonaws.com"
    )
    assert trusted_service(resource("ecs-express.yaml", "ExecutionRole")) == (
        "ecs-tasks.amazonaws.com"
    )
    assert trusted_service(resource("ecs-express.yaml", "TaskRole")) == "ecs-tasks.amazonaws.com"


# --- least privilege -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["apprunner.yaml", "ecs-express.yaml"])
def test_inline_policies_name_their_actions_and_resources(name: str):
    """No wildcard: the service touches its own bucket and its own secrets only."""
    for role in properties_of(name, "AWS::IAM::Role"):
        for policy in role.get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                actions = as_list(statement["Action"])
                assert "*" not in actions
                assert not any(action.endswith(":*") for action in actions)
                assert "*" not in as_list(statement["Resource"])
