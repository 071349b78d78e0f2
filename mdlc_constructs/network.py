"""The private network a model's code runs in (PCI DSS: no public network path).

:class:`ModelNetwork` is either a VPC it creates (private isolated subnets
across availability zones, no NAT gateway, no internet gateway, flow logs to
an encrypted log group) or a team's existing VPC taken by attributes (no VPC
lookup at synthesis). With a network, everything that runs code is in it:

* every Lambda function :func:`~mdlc_constructs.functions.python_function`
  creates in a stack that has a network (``ModelNetwork.of(scope)``);
* every SageMaker training, processing and transform job, model and endpoint
  the workflows create (``VpcConfig``; inter-container traffic encryption on
  training and processing), with the network-interface permissions SageMaker
  needs, scoped to the network's VPC (:meth:`ModelNetwork.grant_network_interfaces`).

Two security groups: ``functions`` (nothing inbound; HTTPS out) and ``jobs``
(SageMaker; inbound only from itself, which distributed training needs, and
HTTPS out). The VPC endpoints: S3 and DynamoDB gateways, and interface
endpoints for every other service the code calls or a team's step commonly
needs (``INTERFACE_ENDPOINTS``), each accepting HTTPS from the VPC only and
each with an endpoint policy admitting only this account's principals. An
existing VPC that has its own endpoints (``endpoints=False``) is checked at
synthesis when the stack has an account and region: a Cloud Control API
lookup through the CDK CLI's context, and a warning naming each missing one.

Written on aws-cdk-lib's ``aws_ec2`` L2s; the ENI statements follow
SageMaker's documented VPC permissions ("Give SageMaker access to resources
in your Amazon VPC").
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Annotations, CfnResource, ContextProvider, RemovalPolicy, Stack, Token
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct, IConstruct

from .grants import grant_statements
from .spec.network import NetworkSpec
from .tokens import stack_of

#: The AWS services the functions and jobs call besides S3 and DynamoDB (gateways),
#: and what a team's own step or container commonly needs (SageMaker API, ECR,
#: Kinesis, Logs, KMS, STS).
INTERFACE_ENDPOINTS: tuple[ec2.InterfaceVpcEndpointAwsService, ...] = (
    ec2.InterfaceVpcEndpointAwsService.SAGEMAKER_API,
    ec2.InterfaceVpcEndpointAwsService.SAGEMAKER_RUNTIME,  # stream consumer, integration
    ec2.InterfaceVpcEndpointAwsService.STS,
    ec2.InterfaceVpcEndpointAwsService.KMS,
    ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
    ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_MONITORING,  # metrics of every engine
    ec2.InterfaceVpcEndpointAwsService.STEP_FUNCTIONS,  # re-training trigger
    ec2.InterfaceVpcEndpointAwsService.KINESIS_STREAMS,
    ec2.InterfaceVpcEndpointAwsService.SNS,  # sns actions
    ec2.InterfaceVpcEndpointAwsService.SQS,  # sqs actions, dead letters
    ec2.InterfaceVpcEndpointAwsService.EVENTBRIDGE,  # eventbridge actions
    ec2.InterfaceVpcEndpointAwsService.ECR,
    ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER,
)

HTTPS = ec2.Port.tcp(443)


class ModelNetwork(Construct):
    """A private network for a model (or for every model of a platform).

    Args:
        vpc: an existing VPC (``ec2.Vpc.from_vpc_attributes``). Default: a new one.
        subnets: the existing VPC's private subnets the code runs in. Required
            with ``vpc``; a new VPC uses its isolated subnets.
        security_groups: existing security groups for the functions and jobs,
            instead of the two this construct creates. Default: created.
        max_azs: availability zones of a new VPC. Default 2.
        cidr: the VPC's address range: a new VPC's (default ``10.80.0.0/16``),
            or an existing one's, which its endpoints accept HTTPS from
            (required with ``vpc`` and ``endpoints``). Written as text, not a
            token, so the rules that check security groups can read it.
        endpoints: create the VPC endpoints (a new VPC always needs them; an
            existing one may have them already). Default True. False with an
            existing VPC: when the stack has a concrete account and region, its
            endpoints are looked up at synthesis (the CDK CLI's Cloud Control
            API context provider, cached in cdk.context.json) and a warning
            (``MISSING_ENDPOINTS_WARNING``) names each one of
            ``REQUIRED_ENDPOINTS`` it lacks; without an environment, an info
            message lists them unchecked.
        key: encrypts a new VPC's flow log group. Required without ``vpc``.

    Attributes:
        vpc, subnets (``ec2.SubnetSelection``), function_security_groups,
        job_security_groups, subnet_ids, job_security_group_ids.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        vpc: ec2.IVpc | None = None,
        subnets: Sequence[ec2.ISubnet] | None = None,
        security_groups: Sequence[ec2.ISecurityGroup] | None = None,
        max_azs: int = 2,
        cidr: str | None = None,
        endpoints: bool = True,
        key: kms.IKey | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        if vpc is not None and not subnets:
            raise ValueError(f"{self.node.path}: an existing vpc needs its private subnets")
        if vpc is None and key is None:
            raise ValueError(f"{self.node.path}: a new VPC needs key= for its flow logs")
        if vpc is not None and endpoints and cidr is None:
            raise ValueError(f"{self.node.path}: an existing vpc's endpoints need its cidr")
        self.cidr = cidr or "10.80.0.0/16"
        if not 1 <= max_azs <= 6:
            raise ValueError(f"{self.node.path}: max_azs must be 1..6, got {max_azs}")
        self.vpc: ec2.IVpc = vpc or self._create_vpc(max_azs, self.cidr, key)
        self.subnets = (ec2.SubnetSelection(subnets=list(subnets)) if subnets
                        else ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED))
        self.subnet_ids: list[str] = self.vpc.select_subnets(
            subnets=self.subnets.subnets, subnet_type=self.subnets.subnet_type).subnet_ids
        if security_groups:
            self.function_security_groups = list(security_groups)
            self.job_security_groups = list(security_groups)
        else:
            self.function_security_groups = [self._security_group(
                "Functions", "MDLC Lambda functions: nothing inbound, HTTPS to AWS endpoints")]
            jobs = self._security_group(
                "Jobs", "MDLC SageMaker jobs and endpoints: inbound only from each other "
                "(distributed training), HTTPS to AWS endpoints")
            jobs.add_ingress_rule(jobs, ec2.Port.all_tcp(),
                                  "Nodes of one distributed training job talk to each other")
            self.job_security_groups = [jobs]
        self.job_security_group_ids = [g.security_group_id for g in self.job_security_groups]
        if endpoints:
            self._create_endpoints()
        else:
            self._check_endpoints(existing=vpc is not None)

    @classmethod
    def from_spec(cls, scope: Construct, construct_id: str, spec: NetworkSpec, *,
                  key: kms.IKey) -> ModelNetwork:
        """The network a spec's ``network`` section describes (created, or an
        existing VPC by its ids; no lookup)."""
        if spec.create:
            return cls(scope, construct_id, max_azs=spec.max_azs, cidr=spec.cidr,
                       endpoints=spec.endpoints, key=key)
        holder = Construct(scope, f"{construct_id}Imported")
        vpc = ec2.Vpc.from_vpc_attributes(
            holder, "Vpc", vpc_id=spec.vpc_id or "", availability_zones=spec.availability_zones,
            isolated_subnet_ids=spec.private_subnet_ids,
            isolated_subnet_route_table_ids=spec.route_table_ids or None)
        tables = spec.route_table_ids or [None] * len(spec.private_subnet_ids)
        subnets = [ec2.Subnet.from_subnet_attributes(holder, f"Subnet{i}", subnet_id=s,
                                                     availability_zone=z, route_table_id=t)
                   for i, (s, z, t) in enumerate(zip(spec.private_subnet_ids,
                                                     spec.availability_zones, tables,
                                                     strict=True))]
        groups = [ec2.SecurityGroup.from_security_group_id(holder, f"Group{i}", g,
                                                           allow_all_outbound=False)
                  for i, g in enumerate(spec.security_group_ids)]
        return cls(scope, construct_id, vpc=vpc, subnets=subnets, security_groups=groups or None,
                   cidr=spec.vpc_cidr, endpoints=spec.endpoints, key=key)

    # -- lookup ---------------------------------------------------------------------

    @staticmethod
    def of(scope: IConstruct) -> ModelNetwork | None:
        """The network of ``scope``'s stack: its ``network`` attribute
        (``MdlcModelStack`` and ``MdlcPlatformStack`` set it), else None."""
        network = getattr(stack_of(scope), "network", None)
        return network if isinstance(network, ModelNetwork) else None

    # -- grants ---------------------------------------------------------------------

    def grant_network_interfaces(self, grantee: iam.IGrantable) -> iam.Grant:
        """What SageMaker needs to place a job's or endpoint's network interfaces
        in this VPC (its documented VpcConfig permissions), scoped to the VPC
        where the API allows it."""
        stack = Stack.of(self)
        vpc_arn = stack.format_arn(service="ec2", resource="vpc",
                                   resource_name=self.vpc.vpc_id)
        interfaces = stack.format_arn(service="ec2", resource="network-interface",
                                      resource_name="*")
        return grant_statements(grantee, [iam.PolicyStatement(
            actions=["ec2:DescribeNetworkInterfaces", "ec2:DescribeVpcs",
                     "ec2:DescribeDhcpOptions", "ec2:DescribeSubnets",
                     "ec2:DescribeSecurityGroups"],
            resources=["*"],
        ), iam.PolicyStatement(
            actions=["ec2:CreateNetworkInterface", "ec2:CreateNetworkInterfacePermission",
                     "ec2:DeleteNetworkInterface", "ec2:DeleteNetworkInterfacePermission"],
            resources=[interfaces],
            conditions={"ArnEquals": {"ec2:Vpc": vpc_arn}},
        ), iam.PolicyStatement(
            actions=["ec2:CreateNetworkInterface"],
            resources=[stack.format_arn(service="ec2", resource="subnet", resource_name=s)
                       for s in self.subnet_ids]
            + [stack.format_arn(service="ec2", resource="security-group", resource_name=g)
               for g in self.job_security_group_ids],
        )], "the network interfaces of SageMaker jobs and endpoints")

    def vpc_config(self) -> dict[str, list[str]]:
        """SageMaker's ``VpcConfig`` for a job or a model in this network."""
        return {"SecurityGroupIds": list(self.job_security_group_ids),
                "Subnets": list(self.subnet_ids)}

    # -- an existing VPC's endpoints -------------------------------------------------

    def _check_endpoints(self, *, existing: bool) -> None:
        """``endpoints=False``: the VPC must have them already. Looked up (Cloud
        Control API, through the CDK CLI's context) when the VPC exists and the
        stack has a concrete account and region; a warning names each missing one."""
        names = ", ".join(REQUIRED_ENDPOINTS)
        stack = Stack.of(self)
        if not existing or Token.is_unresolved(self.vpc.vpc_id):
            Annotations.of(self).add_info(
                f"endpoints=False: the VPC must already have endpoints for {names}; "
                "without them the functions and jobs cannot reach AWS")
            return
        if Token.is_unresolved(stack.account) or Token.is_unresolved(stack.region):
            Annotations.of(self).add_info(
                f"endpoints=False: the VPC must already have endpoints for {names}; "
                "they are not checked: looking them up at synthesis needs the stack's "
                "account and region (env=)")
            return
        found = ContextProvider.get_value(
            self, provider=ENDPOINT_LOOKUP_PROVIDER, props=endpoint_lookup_props(self.vpc.vpc_id),
            dummy_value=[{"ServiceName": LOOKUP_PENDING, "Identifier": LOOKUP_PENDING}],
        ).value
        services = _service_names(found, self.node.path)
        if LOOKUP_PENDING in services:
            # The CDK CLI looks the endpoints up after this pass and synthesizes again.
            Annotations.of(self).add_info(
                f"endpoints=False: the endpoints of {self.vpc.vpc_id} are looked up by "
                "the CDK CLI (Cloud Control API) before the next synthesis")
            return
        missing = missing_endpoints(services, stack.region)
        if missing:
            Annotations.of(self).add_warning_v2(
                MISSING_ENDPOINTS_WARNING,
                f"{self.vpc.vpc_id} has no VPC endpoint for {', '.join(missing)} "
                f"(found in {stack.account}/{stack.region}: "
                f"{', '.join(sorted(services)) or 'none'}); without them the functions and "
                "jobs cannot reach those services. Create them, or set endpoints: true "
                "(with vpc_cidr and route_table_ids) to have the stack create all of them; "
                "after a change, `cdk context --reset` the lookup's key to look again")
        else:
            Annotations.of(self).add_info(
                f"endpoints=False: {self.vpc.vpc_id} has every endpoint the functions and "
                f"jobs need ({names})")

    # -- internals ------------------------------------------------------------------

    def _create_vpc(self, max_azs: int, cidr: str, key: kms.IKey | None) -> ec2.Vpc:
        vpc = ec2.Vpc(
            self, "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(cidr),
            max_azs=max_azs,
            nat_gateways=0,
            subnet_configuration=[ec2.SubnetConfiguration(
                name="Private", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=20)],
            restrict_default_security_group=True,
        )
        log_group = logs.LogGroup(
            self, "FlowLogs", encryption_key=key, retention=logs.RetentionDays.ONE_YEAR,
            removal_policy=RemovalPolicy.RETAIN,
        )
        vpc.add_flow_log("FlowLog", destination=ec2.FlowLogDestination.to_cloud_watch_logs(
            log_group), traffic_type=ec2.FlowLogTrafficType.ALL)
        # The one function outside the VPC: aws-cdk-lib's deploy-time provider
        # that empties the default security group (PCI VPCDefaultSecurityGroupClosed).
        provider = Stack.of(self).node.try_find_child(
            "Custom::VpcRestrictDefaultSGCustomResourceProvider")
        handler = provider.node.try_find_child("Handler") if provider is not None else None
        if isinstance(handler, CfnResource):
            handler.add_metadata("checkov", {"skip": [{
                "id": "CKV_AWS_117",
                "comment": "aws-cdk-lib's custom resource that removes the default security "
                "group's rules at deployment; it calls only the EC2 API and runs no model code",
            }]})
        return vpc

    def _security_group(self, construct_id: str, description: str) -> ec2.SecurityGroup:
        group = ec2.SecurityGroup(self, construct_id, vpc=self.vpc, description=description,
                                  allow_all_outbound=False)
        group.add_egress_rule(
            ec2.Peer.any_ipv4(), HTTPS,
            "HTTPS to AWS APIs through the VPC endpoints (the subnets have no other route; "
            "the S3 and DynamoDB gateways' addresses are AWS prefix lists)")
        return group

    def _create_endpoints(self) -> None:
        subnets = [self.subnets]
        endpoints: list[ec2.GatewayVpcEndpoint | ec2.InterfaceVpcEndpoint] = [
            self.vpc.add_gateway_endpoint(
                "S3", service=ec2.GatewayVpcEndpointAwsService.S3, subnets=subnets),
            self.vpc.add_gateway_endpoint(
                "DynamoDb", service=ec2.GatewayVpcEndpointAwsService.DYNAMODB, subnets=subnets),
        ]
        group = ec2.SecurityGroup(
            self, "Endpoints", vpc=self.vpc, allow_all_outbound=False,
            description="MDLC interface endpoints: HTTPS from the VPC only")
        group.add_ingress_rule(ec2.Peer.ipv4(self.cidr), HTTPS,
                               "HTTPS from the model's functions and jobs")
        endpoints += [self.vpc.add_interface_endpoint(
            _endpoint_id(service), service=service, subnets=self.subnets,
            security_groups=[group], private_dns_enabled=True, open=False)
            for service in INTERFACE_ENDPOINTS]
        account = Stack.of(self).account
        for endpoint in endpoints:
            # Only this account's principals: stolen credentials of another
            # account cannot use the endpoint to move data out.
            endpoint.add_to_policy(iam.PolicyStatement(
                principals=[iam.AnyPrincipal()], actions=["*"], resources=["*"],
                conditions={"StringEquals": {"aws:PrincipalAccount": account}}))


#: The CDK CLI's Cloud Control API context provider (cloud-assembly-schema's
#: ``ContextProvider.CC_API_PROVIDER``) that looks an existing VPC's endpoints up.
ENDPOINT_LOOKUP_PROVIDER = "cc-api-provider"

#: The warning's id (``cdk synth`` prints it; ``Annotations.acknowledge_warning``
#: silences it for a VPC whose endpoints are in another account, e.g. shared).
MISSING_ENDPOINTS_WARNING = "mdlc:network-missing-endpoints"

#: What CDK's context provider returns until the CLI has done the lookup: the
#: first synthesis of ``cdk synth`` gets it, the CLI then queries Cloud Control,
#: caches the answer in cdk.context.json and synthesizes again with it. Seen
#: after that (``--no-lookups``, or an app synthesized without the CLI), the
#: check has not run, and synthesis says so in an info message.
LOOKUP_PENDING = "mdlc:lookup-pending"

#: Every endpoint the functions and jobs need, by the service name's tail after
#: ``com.amazonaws.<region>.`` (gateways first), as the warning names them.
REQUIRED_ENDPOINTS: tuple[str, ...] = (
    "s3", "dynamodb", *(service.short_name for service in INTERFACE_ENDPOINTS))


def endpoint_lookup_props(vpc_id: str) -> dict[str, object]:
    """The Cloud Control query for ``vpc_id``'s endpoints (a ``CcApiContextQuery``
    without its account and region, which the stack adds): every
    ``AWS::EC2::VPCEndpoint`` of the VPC, returning its ``ServiceName``."""
    return {"typeName": "AWS::EC2::VPCEndpoint", "propertyMatch": {"VpcId": vpc_id},
            "propertiesToReturn": ["ServiceName"]}


def missing_endpoints(service_names: set[str], region: str) -> list[str]:
    """The required endpoints (``REQUIRED_ENDPOINTS``) that none of
    ``service_names`` (``com.amazonaws.eu-west-1.sagemaker.runtime``, or with
    another partition's prefix) provides in ``region``."""
    tails = {name.split(f".{region}.", 1)[1] for name in service_names
             if f".{region}." in name}
    return [name for name in REQUIRED_ENDPOINTS if name not in tails]


def _service_names(found: object, path: str) -> set[str]:
    if not isinstance(found, list) or not all(
            isinstance(e, dict) and isinstance(e.get("ServiceName"), str) for e in found):
        raise ValueError(
            f"{path}: the VPC endpoint lookup ({ENDPOINT_LOOKUP_PROVIDER}) returned "
            f"{found!r}, expected a list of objects with a ServiceName; reset its key with "
            "`cdk context --reset` and synthesize again")
    return {e["ServiceName"] for e in found}


def _endpoint_id(service: ec2.InterfaceVpcEndpointAwsService) -> str:
    # Stable construct ids from the service's short name (sagemaker.runtime ->
    # SagemakerRuntime): an id change would replace the endpoint.
    short = service.short_name
    return "".join(part.capitalize() for part in short.replace("-", ".").split("."))


__all__ = ["INTERFACE_ENDPOINTS", "MISSING_ENDPOINTS_WARNING", "REQUIRED_ENDPOINTS",
           "ModelNetwork", "endpoint_lookup_props", "missing_endpoints"]
