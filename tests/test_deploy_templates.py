"""The CloudFormation templates lint clean and keep the properties a private diary needs.

Templates are read as data (cfn-lint's decoder), then resolved for a given set of parameter
values: Conditions and Rules are evaluated, Fn::If picks its branch and AWS::NoValue drops
what it stands for, so each test sees the stack CloudFormation would create.
"""

from __future__ import annotations

import copy
import functools
import itertools
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from cfnlint.decode import decode

from .servers import unavailable

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
TEMPLATES = sorted(DEPLOY.glob("*.yaml"))
SERVICES = ["apprunner.yaml", "ecs-express.yaml"]
README = DEPLOY / "README.md"

# cfn-lint's console entry point, run by this interpreter: no dependence on PATH or bin/.
CFN_LINT = [sys.executable, "-c", "import sys; from cfnlint.runner import main; sys.exit(main())"]

NO_VALUE = object()
PSEUDO = {"AWS::Region": "ap-northeast-1", "AWS::AccountId": "111122223333"}
# Parameters without a default.
REQUIRED = {"ImageTag": "abc1234"}


def template(name: str) -> dict[str, Any]:
    """The template as data; cfn-lint's decoder understands !Ref, !Sub and friends."""
    return copy.deepcopy(_decoded(name))


@functools.cache
def _decoded(name: str) -> dict[str, Any]:
    parsed, problems = decode(str(DEPLOY / name))
    assert not problems, problems
    return parsed


def parameters(name: str, **overrides: str) -> dict[str, str]:
    """Every parameter's value: its default unless overridden, plus the pseudo parameters."""
    values = {**PSEUDO, **{k: v for k, v in overrides.items() if k in PSEUDO}}
    overrides = {k: v for k, v in overrides.items() if k not in PSEUDO}
    for key, spec in template(name).get("Parameters", {}).items():
        if key in overrides:
            values[key] = overrides[key]
        elif "Default" in spec:
            values[key] = str(spec["Default"])
        else:
            values[key] = REQUIRED[key]
    unknown = set(overrides) - values.keys()
    assert not unknown, f"{name} has no parameters {unknown}"
    for key, value in overrides.items():
        allowed = template(name)["Parameters"][key].get("AllowedValues")
        assert allowed is None or value in [str(a) for a in allowed], (key, value)
    return values


def evaluate(expression: Any, params: dict[str, str], conditions: dict[str, Any]) -> Any:
    """A condition or rule expression: Fn::Equals/Not/And/Or/Contains, Ref, Condition."""
    if isinstance(expression, list):
        return [evaluate(each, params, conditions) for each in expression]
    if not isinstance(expression, dict):
        return str(expression) if isinstance(expression, int | float) else expression
    ((function, argument),) = expression.items()
    if function == "Ref":
        return params[argument]
    if function == "Condition":
        return evaluate(conditions[argument], params, conditions)
    values = evaluate(argument, params, conditions)
    if function == "Fn::Equals":
        return values[0] == values[1]
    if function == "Fn::Not":
        return not values[0]
    if function == "Fn::And":
        return all(values)
    if function == "Fn::Or":
        return any(values)
    if function == "Fn::Contains":
        return values[1] in values[0]
    raise AssertionError(f"no evaluator for {function}")


def broken_rules(name: str, **overrides: str) -> list[str]:
    """The Rules CloudFormation would refuse the stack for, with these parameters."""
    params = parameters(name, **overrides)
    failed = []
    for rule_name, rule in template(name).get("Rules", {}).items():
        if "RuleCondition" in rule and not evaluate(rule["RuleCondition"], params, {}):
            continue
        if not all(evaluate(a["Assert"], params, {}) for a in rule["Assertions"]):
            failed.append(rule_name)
    return failed


def stack(name: str, **overrides: str) -> dict[str, Any]:
    """The template as CloudFormation would create it with these parameters."""
    parsed = template(name)
    params = parameters(name, **overrides)
    assert not broken_rules(name, **overrides), broken_rules(name, **overrides)
    raw_conditions = parsed.get("Conditions", {})
    conditions = {c: evaluate(e, params, raw_conditions) for c, e in raw_conditions.items()}

    def resolve(node: Any) -> Any:
        if isinstance(node, list):
            return [r for r in (resolve(each) for each in node) if r is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if node == {"Ref": "AWS::NoValue"}:
            return NO_VALUE
        if list(node) == ["Fn::If"]:
            condition, when_true, when_false = node["Fn::If"]
            return resolve(when_true if conditions[condition] else when_false)
        if list(node) == ["Ref"] and node["Ref"] in params:
            return params[node["Ref"]]
        return {k: r for k, r in ((k, resolve(v)) for k, v in node.items()) if r is not NO_VALUE}

    kept = {
        logical_id: resolve(each)
        for logical_id, each in parsed["Resources"].items()
        if conditions.get(each.get("Condition"), True)
    }
    outputs = {
        key: resolve(each)
        for key, each in parsed.get("Outputs", {}).items()
        if conditions.get(each.get("Condition"), True)
    }
    return {"Resources": kept, "Outputs": outputs, "Metadata": parsed.get("Metadata", {})}


def resource(name: str, logical_id: str, **overrides: str) -> dict[str, Any]:
    return stack(name, **overrides)["Resources"][logical_id]


def properties_of(name: str, resource_type: str, **overrides: str) -> list[dict[str, Any]]:
    return [
        each["Properties"]
        for each in stack(name, **overrides)["Resources"].values()
        if each["Type"] == resource_type
    ]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def imported(export: str) -> dict[str, Any]:
    """How a service stack names one of the shared stack's exports."""
    return {"Fn::ImportValue": {"Fn::Sub": f"${{SharedStackName}}-{export}"}}


def trusted_service(role: dict[str, Any]) -> str:
    (statement,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Action"] == "sts:AssumeRole"
    return statement["Principal"]["Service"]


def readable_secrets(role: dict[str, Any]) -> list[Any]:
    return [
        resource_ref
        for policy in role["Properties"].get("Policies", [])
        for statement in policy["PolicyDocument"]["Statement"]
        if "secretsmanager:GetSecretValue" in as_list(statement["Action"])
        for resource_ref in as_list(statement["Resource"])
    ]


# --- the service, per platform -----------------------------------------------------------


def service_container(name: str, **overrides: str) -> dict[str, Any]:
    """The service's environment and secrets, whatever the platform calls them."""
    if name == "apprunner.yaml":
        (service,) = properties_of(name, "AWS::AppRunner::Service", **overrides)
        image = service["SourceConfiguration"]["ImageRepository"]["ImageConfiguration"]
        return {
            "env": {v["Name"]: v["Value"] for v in image["RuntimeEnvironmentVariables"]},
            "secrets": {s["Name"]: s["Value"] for s in image["RuntimeEnvironmentSecrets"]},
        }
    (service,) = properties_of(name, "AWS::ECS::ExpressGatewayService", **overrides)
    container = service["PrimaryContainer"]
    return {
        "env": {v["Name"]: v["Value"] for v in container["Environment"]},
        "secrets": {s["Name"]: s["ValueFrom"] for s in container["Secrets"]},
    }


def task_container(name: str, logical_id: str, **overrides: str) -> dict[str, Any]:
    task = resource(name, logical_id, **overrides)["Properties"]
    (container,) = task["ContainerDefinitions"]
    return {
        "env": {v["Name"]: v["Value"] for v in container.get("Environment", [])},
        "secrets": {s["Name"]: s["ValueFrom"] for s in container.get("Secrets", [])},
        "task": task,
    }


SERVICE_ROLES = {
    "apprunner.yaml": ["InstanceRole"],
    "ecs-express.yaml": ["ExecutionRole", "TaskRole"],
}
ADMIN_EXECUTION_ROLE = {"apprunner.yaml": "AdminExecutionRole", "ecs-express.yaml": "ExecutionRole"}


# --- lint ----------------------------------------------------------------------------------


def test_all_three_stacks_are_there():
    assert {p.name for p in TEMPLATES} >= {"network-data.yaml", *SERVICES}


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


@pytest.mark.parametrize("platform", ["EcsExpress", "AppRunner"])
def test_every_route_table_reaches_s3_through_the_gateway_endpoint(platform):
    """With VPC egress, S3 without an endpoint or NAT hangs: the original service's bug."""
    zones = {"AvailabilityZoneId1": "apne1-az1", "AvailabilityZoneId2": "apne1-az4"}
    built = stack("network-data.yaml", ServicePlatform=platform, **zones)
    route_tables = {
        logical_id
        for logical_id, each in built["Resources"].items()
        if each["Type"] == "AWS::EC2::RouteTable"
    }
    (endpoint,) = [
        each["Properties"]
        for each in built["Resources"].values()
        if each["Type"] == "AWS::EC2::VPCEndpoint"
        and each["Properties"].get("VpcEndpointType") == "Gateway"
    ]
    assert endpoint["ServiceName"] == {"Fn::Sub": "com.amazonaws.${AWS::Region}.s3"}
    assert {ref["Ref"] for ref in endpoint["RouteTableIds"]} == route_tables
    assert len(route_tables) == 2


def interface_endpoints(**overrides: str) -> set[str]:
    return {
        each["ServiceName"]["Fn::Sub"].removeprefix("com.amazonaws.${AWS::Region}.")
        for each in properties_of("network-data.yaml", "AWS::EC2::VPCEndpoint", **overrides)
        if each["VpcEndpointType"] == "Interface"
    }


def test_each_platform_gets_the_interface_endpoints_it_needs_and_no_more():
    """App Runner's app calls Secrets Manager itself after a password change (VPC egress sends
    it into the VPC); ECS tasks also pull the image, read secrets and ship logs through the
    VPC. Nothing is opt-in: the platform's working path is what the stack makes."""
    app_runner_zones = {"AvailabilityZoneId1": "apne1-az1", "AvailabilityZoneId2": "apne1-az4"}
    assert interface_endpoints(ServicePlatform="AppRunner", **app_runner_zones) == {
        "secretsmanager"
    }
    assert interface_endpoints(ServicePlatform="EcsExpress") == {
        "ecr.api",
        "ecr.dkr",
        "logs",
        "secretsmanager",
    }
    # The default is a working platform, the one new accounts can use.
    assert interface_endpoints() == interface_endpoints(ServicePlatform="EcsExpress")


def test_interface_endpoints_answer_the_service_in_both_private_subnets():
    for each in properties_of("network-data.yaml", "AWS::EC2::VPCEndpoint"):
        if each["VpcEndpointType"] == "Interface":
            assert each["PrivateDnsEnabled"] is True
            assert each["SubnetIds"] == [{"Ref": "PrivateSubnet1"}, {"Ref": "PrivateSubnet2"}]
            assert each["SecurityGroupIds"] == [{"Ref": "EndpointSecurityGroup"}]
    group = resource("network-data.yaml", "EndpointSecurityGroup")["Properties"]
    (rule,) = group["SecurityGroupIngress"]
    assert (rule["FromPort"], rule["SourceSecurityGroupId"]) == (
        443,
        {"Ref": "ServiceSecurityGroup"},
    )


def test_the_readme_prices_each_interface_endpoint():
    text = README.read_text()
    for service in (
        "Secrets Manager (interface)",
        "ECR api, ECR dkr (interface)",
        "CloudWatch Logs (interface)",
    ):
        (row,) = [line for line in text.splitlines() if line.startswith(f"| {service}")]
        assert re.search(r"\$\d+(\.\d+)? \+ \$0\.01/GB", row), row
    assert (
        "| S3 (gateway) |" in text
        and "| free |" in text.split("| S3 (gateway) |")[1].splitlines()[0]
    )


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
    outputs = stack(
        "network-data.yaml",
        ServicePlatform="AppRunner",
        AvailabilityZoneId1="apne1-az1",
        AvailabilityZoneId2="apne1-az4",
    )["Outputs"]
    exported = {key for key, each in outputs.items() if "Export" in each}
    for name in exported:
        assert outputs[name]["Export"]["Name"] == {"Fn::Sub": f"${{AWS::StackName}}-{name}"}
    for service in SERVICES:
        wanted = set(re.findall(r"\$\{SharedStackName\}-(\w+)", (DEPLOY / service).read_text()))
        # ecs-express.yaml also imports ${SubnetTier}Subnet1 and 2: Public or Private.
        wanted |= {f"{tier}Subnet{n}" for tier in ("Public", "Private") for n in (1, 2)}
        assert wanted <= exported, wanted - exported
    assert outputs["DatabaseSecretArn"]["Value"] == {
        "Fn::GetAtt": ["Database", "MasterUserSecret.SecretArn"]
    }
    assert outputs["AppDatabaseSecretArn"]["Value"] == {"Ref": "AppDatabaseSecret"}
    assert outputs["VpcCidr"]["Value"] == {"Fn::GetAtt": ["Vpc", "CidrBlock"]}


# --- item 3: the app's own least-privilege login ----------------------------------------


def test_the_app_role_gets_a_generated_secret_without_punctuation():
    secret = resource("network-data.yaml", "AppDatabaseSecret")["Properties"]
    generated = secret["GenerateSecretString"]
    assert json.loads(generated["SecretStringTemplate"]) == {"username": "diary_app"}
    assert generated["GenerateStringKey"] == "password"
    assert generated["ExcludePunctuation"] is True
    assert generated["PasswordLength"] >= 32


@pytest.mark.parametrize("name", SERVICES)
def test_the_service_logs_in_as_the_app_role_and_never_sees_the_master_secret(name):
    container = service_container(name)
    assert container["secrets"]["DB_SECRET"] == imported("AppDatabaseSecretArn")
    assert container["env"]["DB_SECRET_ARN"] == imported("AppDatabaseSecretArn")
    for key, export in (
        ("DB_ENDPOINT", "DatabaseEndpoint"),
        ("DB_PORT", "DatabasePort"),
        ("DB_NAME", "DatabaseName"),
    ):
        assert container["env"][key] == imported(export)
    master = imported("DatabaseSecretArn")
    assert master not in container["secrets"].values()
    assert master not in container["env"].values()
    for role in SERVICE_ROLES[name]:
        readable = readable_secrets(resource(name, role))
        assert master not in readable, role
        assert imported("AppDatabaseSecretArn") in readable, role


@pytest.mark.parametrize("name", SERVICES)
def test_migrations_and_the_role_command_run_as_the_owner_in_a_one_off_task(name):
    owner = task_container(name, "OwnerTaskDefinition")
    assert owner["secrets"]["DB_SECRET"] == imported("DatabaseSecretArn")
    app_secret = imported("AppDatabaseSecretArn")
    # db-create-app-role reads the app role's password from stdin: injected, never an override.
    for variable, key in (("APP_DB_USERNAME", "username"), ("APP_DB_PASSWORD", "password")):
        assert owner["secrets"][variable] == {
            "Fn::Sub": ["${Arn}:" + key + "::", {"Arn": app_secret}]
        }
    execution_role = owner["task"]["ExecutionRoleArn"]["Fn::GetAtt"][0]
    readable = readable_secrets(resource(name, execution_role))
    assert imported("DatabaseSecretArn") in readable and app_secret in readable
    assert (
        execution_role not in SERVICE_ROLES[name] and execution_role != ADMIN_EXECUTION_ROLE[name]
    )
    assert "TaskRoleArn" not in owner["task"]
    # Admin commands (users, tokens, doctor) run as the app role, like the service.
    admin = task_container(name, "AdminTaskDefinition")
    assert admin["secrets"]["DB_SECRET"] == app_secret
    assert imported("DatabaseSecretArn") not in readable_secrets(
        resource(name, ADMIN_EXECUTION_ROLE[name])
    )


@pytest.mark.parametrize("name", SERVICES)
def test_every_database_client_checks_the_rds_certificate(name):
    containers = [
        service_container(name),
        task_container(name, "AdminTaskDefinition"),
        task_container(name, "OwnerTaskDefinition"),
    ]
    for container in containers:
        assert container["env"]["DB_SSLMODE"] == "verify-full"
        assert container["env"]["DB_SSLROOTCERT"] == "/app/certs/rds-global-bundle.pem"


@pytest.mark.parametrize("name", SERVICES)
def test_the_one_off_tasks_exist_before_the_service_so_migrations_can_run_first(name):
    first = stack(name, CreateService="false")["Resources"]
    assert {"OneOffCluster", "OwnerTaskDefinition", "AdminTaskDefinition"} <= first.keys()
    assert not any(
        each["Type"] in ("AWS::AppRunner::Service", "AWS::ECS::ExpressGatewayService")
        for each in first.values()
    )
    assert len(stack(name, CreateService="true")["Resources"]) == len(first) + 1


@pytest.mark.parametrize("name", SERVICES)
def test_a_release_can_migrate_with_the_new_image_before_the_service_moves(name):
    old, new = "abc1234", "def5678"
    owner = task_container(name, "OwnerTaskDefinition", ImageTag=old, OneOffImageTag=new)
    assert owner["task"]["ContainerDefinitions"][0]["Image"]["Fn::Sub"][1]["Tag"] == new
    same = task_container(name, "OwnerTaskDefinition", ImageTag=old)
    assert same["task"]["ContainerDefinitions"][0]["Image"]["Fn::Sub"][1]["Tag"] == old


def test_the_readme_deploys_in_the_order_the_roles_need():
    """Shared stack, image, one-off resources, migrate, create the app role, then the service."""
    text = README.read_text().split("## Deploy from an empty account")[1]
    steps = [
        "--template-file deploy/network-data.yaml",
        "docker push",
        "CreateService=false",
        "flask --app diary db-upgrade-locked",
        "flask --app diary db-create-app-role",
        "CreateService=true",
    ]
    positions = [text.index(step) for step in steps]
    assert positions == sorted(positions)


# --- item 4: one sign-in count for every instance ---------------------------------------


@pytest.mark.parametrize("name", SERVICES)
def test_sign_in_throttling_counts_in_the_database_on_both_platforms(name):
    assert service_container(name)["env"]["RATELIMIT_STORAGE_URI"] == "database://"


# --- item 5: migrations off the start path ----------------------------------------------


def test_app_runner_does_not_migrate_on_start_unless_asked():
    assert parameters("apprunner.yaml")["MigrateOnStart"] == "false"
    container = service_container("apprunner.yaml")
    assert container["env"]["MIGRATE_ON_START"] == "false"
    assert "MIGRATION_DB_SECRET" not in container["secrets"]


def test_app_runner_migrating_on_start_gets_the_owner_secret_and_a_long_enough_health_check():
    container = service_container("apprunner.yaml", MigrateOnStart="true")
    assert container["env"]["MIGRATE_ON_START"] == "true"
    # The entrypoint migrates with it and removes it before gunicorn (test_container.py).
    assert container["secrets"]["MIGRATION_DB_SECRET"] == imported("DatabaseSecretArn")
    assert container["secrets"]["DB_SECRET"] == imported("AppDatabaseSecretArn")
    assert imported("DatabaseSecretArn") in readable_secrets(
        resource("apprunner.yaml", "InstanceRole", MigrateOnStart="true")
    )

    def window(**overrides: str) -> int:
        (service,) = properties_of("apprunner.yaml", "AWS::AppRunner::Service", **overrides)
        check = service["HealthCheckConfiguration"]
        return int(check["Interval"]) * int(check["UnhealthyThreshold"])

    # App Runner's limits are 20 and 20: the widest window, as the README promises.
    assert window(MigrateOnStart="true") == 400
    assert window() < window(MigrateOnStart="true")


def test_ecs_express_never_migrates_on_start():
    """No health-check grace period in Express Mode's resource: a one-off task migrates."""
    assert service_container("ecs-express.yaml")["env"]["MIGRATE_ON_START"] == "false"
    assert "MigrateOnStart" not in template("ecs-express.yaml")["Parameters"]


# --- item 6: instances x connections fit the database -----------------------------------


@pytest.mark.parametrize(
    ("name", "parameter"), [("apprunner.yaml", "MaxInstances"), ("ecs-express.yaml", "MaxTasks")]
)
def test_the_most_instances_allowed_fit_the_database_connections(name, parameter):
    budget = template(name)["Metadata"]["ConnectionBudget"]
    env = service_container(name)["env"]
    per_instance = int(env["WEB_CONCURRENCY"]) * int(env["GUNICORN_THREADS"])
    assert per_instance == 8
    most = template(name)["Parameters"][parameter]["MaxValue"]
    assert int(parameters(name)[parameter]) <= most
    connections = most * per_instance * budget["DeploymentOverlap"] + budget["ReservedConnections"]
    assert budget["DeploymentOverlap"] >= 2
    assert connections <= budget["DatabaseMaxConnections"]


def test_app_runner_scales_with_an_auto_scaling_configuration_capped_by_max_instances():
    (service,) = properties_of("apprunner.yaml", "AWS::AppRunner::Service")
    assert service["AutoScalingConfigurationArn"] == {
        "Fn::GetAtt": ["AutoScaling", "AutoScalingConfigurationArn"]
    }
    scaling = resource("apprunner.yaml", "AutoScaling", MaxInstances="3")
    assert scaling["Type"] == "AWS::AppRunner::AutoScalingConfiguration"
    assert scaling["Properties"]["MaxSize"] == "3"
    assert scaling["Properties"]["MinSize"] == parameters("apprunner.yaml")["MinInstances"]


def test_ecs_express_caps_its_tasks():
    (service,) = properties_of("ecs-express.yaml", "AWS::ECS::ExpressGatewayService", MaxTasks="3")
    assert service["ScalingTarget"]["MaxTaskCount"] == "3"


# --- item 7: regions, zones, sizes, images, trust ---------------------------------------

APP_RUNNER_ZONES = {"AvailabilityZoneId1": "apne1-az1", "AvailabilityZoneId2": "apne1-az4"}


def test_app_runner_subnets_come_from_zone_ids_the_operator_chose():
    built = stack("network-data.yaml", ServicePlatform="AppRunner", **APP_RUNNER_ZONES)
    for subnet, zone in (("PrivateSubnet1", "apne1-az1"), ("PrivateSubnet2", "apne1-az4")):
        properties = built["Resources"][subnet]["Properties"]
        assert properties["AvailabilityZoneId"] == zone
        assert "AvailabilityZone" not in properties
    # Without a choice (ECS) the region's first two AZs, as before.
    default = resource("network-data.yaml", "PrivateSubnet2")["Properties"]
    assert default["AvailabilityZone"] == {"Fn::Select": [1, {"Fn::GetAZs": ""}]}


def test_the_app_runner_shared_stack_refuses_missing_zones_and_other_regions():
    assert broken_rules("network-data.yaml", ServicePlatform="AppRunner") == ["AppRunnerZones"]
    assert broken_rules("network-data.yaml", ServicePlatform="AppRunner", **APP_RUNNER_ZONES) == []
    assert broken_rules(
        "network-data.yaml", ServicePlatform="AppRunner", AvailabilityZoneId1="apne1-az1"
    ) == ["BothZonesOrNeither"]
    assert broken_rules(
        "network-data.yaml",
        ServicePlatform="AppRunner",
        AvailabilityZoneId1="apne1-az1",
        AvailabilityZoneId2="apne1-az1",
    ) == ["BothZonesOrNeither"]
    elsewhere = {"AWS::Region": "sa-east-1"}
    assert broken_rules(
        "network-data.yaml", ServicePlatform="AppRunner", **APP_RUNNER_ZONES, **elsewhere
    ) == ["AppRunnerRegion"]
    assert broken_rules("apprunner.yaml", **elsewhere) == ["AppRunnerRegion"]
    # ECS Express Mode is not held to App Runner's regions.
    assert broken_rules("network-data.yaml", **elsewhere) == []


def test_app_runner_only_takes_subnets_the_shared_stack_checked_for_app_runner():
    connector = resource("apprunner.yaml", "VpcConnector")["Properties"]
    assert connector["Subnets"] == [imported("AppRunnerSubnet1"), imported("AppRunnerSubnet2")]
    ecs_shared = stack("network-data.yaml")["Outputs"]
    assert "AppRunnerSubnet1" not in ecs_shared
    app_runner_shared = stack("network-data.yaml", ServicePlatform="AppRunner", **APP_RUNNER_ZONES)
    assert app_runner_shared["Outputs"]["AppRunnerSubnet1"]["Value"] == {"Ref": "PrivateSubnet1"}


def app_runner_pair_runs(cpu: str, memory: str) -> bool:
    """App Runner's supported configurations (a subset: the template offers up to 2 vCPU)."""
    valid = {
        "0.25 vCPU": {"0.5 GB", "1 GB"},
        "0.5 vCPU": {"1 GB"},
        "1 vCPU": {"2 GB", "3 GB", "4 GB"},
        "2 vCPU": {"4 GB"},
    }
    return memory in valid[cpu]


def fargate_pair_runs(cpu: str, memory: str) -> bool:
    """Fargate's task sizes: 256 with 512/1024/2048 MiB, then 2x to 8x the CPU in GiB steps."""
    cpu_units, mib = int(cpu), int(memory)
    if cpu_units == 256:
        return mib in (512, 1024, 2048)
    return mib % 1024 == 0 and 2 * cpu_units <= mib <= 8 * cpu_units


@pytest.mark.parametrize(
    ("name", "runs"),
    [("apprunner.yaml", app_runner_pair_runs), ("ecs-express.yaml", fargate_pair_runs)],
)
def test_only_cpu_and_memory_pairs_the_platform_runs_pass_the_rules(name, runs):
    offered = template(name)["Parameters"]
    pairs = itertools.product(offered["Cpu"]["AllowedValues"], offered["Memory"]["AllowedValues"])
    for cpu, memory in pairs:
        accepted = not broken_rules(name, Cpu=str(cpu), Memory=str(memory))
        assert accepted == runs(str(cpu), str(memory)), (cpu, memory)
    assert not broken_rules(name)  # the defaults are a valid pair


def test_image_tags_are_immutable_and_app_runner_never_deploys_on_a_push():
    (repository,) = properties_of("network-data.yaml", "AWS::ECR::Repository")
    assert repository["ImageTagMutability"] == "IMMUTABLE"
    (service,) = properties_of("apprunner.yaml", "AWS::AppRunner::Service")
    assert service["SourceConfiguration"]["AutoDeploymentsEnabled"] is False
    for name in SERVICES:
        assert "Default" not in template(name)["Parameters"]["ImageTag"]  # no "latest"


@pytest.mark.parametrize("name", SERVICES)
def test_service_roles_trust_their_service_only_on_behalf_of_this_account(name):
    """Confused deputy: another account cannot make the service assume our roles."""
    roles = {k: v for k, v in stack(name)["Resources"].items() if v["Type"] == "AWS::IAM::Role"}
    assert roles
    for logical_id, role in roles.items():
        (statement,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        service = statement["Principal"]["Service"]
        prefix = {
            "tasks.apprunner.amazonaws.com": "apprunner",
            "build.apprunner.amazonaws.com": "apprunner",
        }.get(service, "ecs")
        condition = statement["Condition"]
        accounts = [
            condition[op]["aws:SourceAccount"]
            for op in ("StringEquals", "StringEqualsIfExists")
            if op in condition
        ]
        assert accounts == [PSEUDO["AWS::AccountId"]], logical_id
        arns = [
            condition[op]["aws:SourceArn"]
            for op in ("ArnLike", "ArnLikeIfExists")
            if op in condition
        ]
        assert arns == [
            {"Fn::Sub": f"arn:${{AWS::Partition}}:{prefix}:${{AWS::Region}}:${{AWS::AccountId}}:*"}
        ], logical_id


@pytest.mark.parametrize("name", SERVICES)
def test_task_roles_use_the_conditions_ecs_documents_for_them_strictly(name):
    task_roles = {"apprunner.yaml": ["AdminTaskRole"], "ecs-express.yaml": ["TaskRole"]}[name]
    for role in task_roles:
        (statement,) = resource(name, role)["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert {"StringEquals", "ArnLike"} <= statement["Condition"].keys()


BUCKET_TEARDOWN_LIMIT = 1000


def readme_bucket_teardown() -> str:
    """The README's shell block that empties the photo bucket."""
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(), flags=re.S)
    (block,) = [b for b in blocks if "list-object-versions" in b]
    return block


def test_the_readme_empties_a_versioned_bucket_of_more_than_a_thousand_entries(
    s3_endpoint: str, tmp_path: Path
):
    """The teardown block, run by the real AWS CLI against moto: every version and delete
    marker goes, in delete-objects calls of at most 1,000 keys (S3 refuses more; moto does
    not, so the stand-in `aws` below refuses for it)."""
    real_aws = shutil.which("aws")
    if real_aws is None:
        unavailable("the AWS CLI is not on PATH (apt-get install awscli)")
    bucket = f"teardown-{os.urandom(4).hex()}"
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="ap-northeast-1",
        config=Config(max_pool_connections=8),
    )
    s3.create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "ap-northeast-1"}
    )
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    # 1,010 photos (more versions than one call may delete), 300 of them then deleted: 300
    # delete markers on top. Written in parallel: moto takes its time per request.
    keys = [f"7/{n:04d}/original.jpg" for n in range(1010)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: s3.put_object(Bucket=bucket, Key=key, Body=b"jpeg"), keys))
    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key} for key in keys[:300]]})

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "delete-calls.txt"
    stand_in = bin_dir / "aws"
    stand_in.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "args = sys.argv[1:]\n"
        "if 'delete-objects' in args:\n"
        "    count = len(json.loads(args[args.index('--delete') + 1]).get('Objects') or [])\n"
        f"    open({str(calls)!r}, 'a').write(f'{{count}}\\n')\n"
        f"    if count > {BUCKET_TEARDOWN_LIMIT}:\n"
        "        sys.exit('MalformedXML: more than 1,000 keys in one DeleteObjects request')\n"
        f"os.execv({real_aws!r}, [{real_aws!r}, *args, '--endpoint-url', {s3_endpoint!r}])\n"
    )
    stand_in.chmod(stand_in.stat().st_mode | stat.S_IXUSR)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "BUCKET": bucket,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "ap-northeast-1",
        "AWS_PAGER": "",
    }
    env.pop("AWS_PROFILE", None)

    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", readme_bucket_teardown()],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    counts = [int(line) for line in calls.read_text().split()]
    assert sum(counts) == 1310 and max(counts) <= BUCKET_TEARDOWN_LIMIT, counts
    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


# --- item 8: whose X-Forwarded-For is believed ------------------------------------------


def test_ecs_express_believes_forwarded_headers_from_the_vpc_only():
    env = service_container("ecs-express.yaml")["env"]
    assert env["TRUSTED_PROXY_CIDRS"] == imported("VpcCidr")


def test_app_runner_believes_its_router_which_is_every_peer_it_has():
    env = service_container("apprunner.yaml")["env"]
    assert env["TRUSTED_PROXY_CIDRS"] == "0.0.0.0/0,::/0"


# --- roles and least privilege ------------------------------------------------------------


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
    assert service["HealthCheckConfiguration"]["Protocol"] == "HTTP"
    assert service["HealthCheckConfiguration"]["Path"] == "/healthz"
    egress = service["NetworkConfiguration"]["EgressConfiguration"]
    assert egress["EgressType"] == "VPC"
    assert egress["VpcConnectorArn"] == {"Fn::GetAtt": ["VpcConnector", "VpcConnectorArn"]}
    assert set(service_container("apprunner.yaml")["secrets"]) == {"DB_SECRET", "SECRET_KEY"}
    env = service_container("apprunner.yaml")["env"]
    assert {"BUCKET", "AWS_REGION", "DB_ENDPOINT", "DB_PORT", "DB_NAME"} <= env.keys()


def test_ecs_express_runs_the_same_image_on_8080_with_the_same_secrets():
    (service,) = properties_of("ecs-express.yaml", "AWS::ECS::ExpressGatewayService")
    assert service["HealthCheckPath"] == "/healthz"
    assert service["PrimaryContainer"]["ContainerPort"] == 8080
    container = service_container("ecs-express.yaml")
    assert set(container["secrets"]) == {"DB_SECRET", "SECRET_KEY"}
    assert {"BUCKET", "AWS_REGION", "DB_ENDPOINT", "DB_PORT", "DB_NAME"} <= container["env"].keys()
    (group,) = service["NetworkConfiguration"]["SecurityGroups"]
    assert group == imported("ServiceSecurityGroupId")


def test_ecs_express_roles_trust_the_right_services():
    assert trusted_service(resource("ecs-express.yaml", "InfrastructureRole")) == (
        "ecs.amazonaws.com"
    )
    for role in ("ExecutionRole", "TaskRole", "OwnerExecutionRole"):
        assert trusted_service(resource("ecs-express.yaml", role)) == "ecs-tasks.amazonaws.com"


@pytest.mark.parametrize("name", SERVICES)
def test_inline_policies_name_their_actions_and_resources(name):
    """No wildcard: the service touches its own bucket and its own secrets only."""
    for overrides in ({}, {"MigrateOnStart": "true"} if name == "apprunner.yaml" else {}):
        for role in properties_of(name, "AWS::IAM::Role", **overrides):
            for policy in role.get("Policies", []):
                for statement in policy["PolicyDocument"]["Statement"]:
                    actions = as_list(statement["Action"])
                    assert "*" not in actions
                    assert not any(action.endswith(":*") for action in actions)
                    assert "*" not in as_list(statement["Resource"])
