"""The spec's ``network`` section: the private network a model's code runs in."""

from __future__ import annotations

import re

from pydantic import Field, model_validator

from .base import SpecModel

_VPC = re.compile(r"^vpc-[0-9a-f]{8,17}$")
_SUBNET = re.compile(r"^subnet-[0-9a-f]{8,17}$")
_GROUP = re.compile(r"^sg-[0-9a-f]{8,17}$")
_ROUTE_TABLE = re.compile(r"^rtb-[0-9a-f]{8,17}$")
_ZONE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d[a-z]$")
_CIDR = re.compile(r"^\d{1,3}(\.\d{1,3}){3}/(1[6-9]|2[0-8])$")


class NetworkSpec(SpecModel):
    """Either ``create: true`` (a VPC of private isolated subnets, no NAT) or an
    existing VPC by its ids (no lookup at synthesis)."""

    create: bool = Field(
        default=False,
        description="create a VPC of private isolated subnets across max_azs zones, with "
        "the VPC endpoints the code calls, no NAT and no internet gateway",
    )
    max_azs: int = Field(default=2, ge=1, le=6,
                         description="availability zones of a created VPC")
    cidr: str = Field(default="10.80.0.0/16",
                      description="address range of a created VPC (/16 to /28)")
    vpc_id: str | None = Field(default=None, description="an existing VPC (vpc-...)")
    vpc_cidr: str | None = Field(
        default=None, description="the existing VPC's address range; needed to create its "
        "VPC endpoints (endpoints: true)")
    availability_zones: list[str] = Field(
        default_factory=list, description="the existing VPC's zones, one per private subnet")
    private_subnet_ids: list[str] = Field(
        default_factory=list, description="the existing VPC's private subnets (subnet-...)")
    route_table_ids: list[str] = Field(
        default_factory=list, description="the private subnets' route tables, one per subnet "
        "(rtb-...); the S3 and DynamoDB gateway endpoints are added to them "
        "(endpoints: true)")
    security_group_ids: list[str] = Field(
        default_factory=list, description="existing security groups for the functions and "
        "jobs; default: two the stack creates (nothing inbound, HTTPS out)")
    endpoints: bool = Field(
        default=True, description="create the VPC endpoints (S3 and DynamoDB gateways; "
        "SageMaker Runtime, CloudWatch, Step Functions, SNS, SQS, EventBridge interfaces); "
        "false when an existing VPC has them")

    @model_validator(mode="after")
    def _one_kind(self) -> NetworkSpec:
        problems = []
        existing = self.vpc_id is not None
        if self.create == existing:
            problems.append("give either create: true or vpc_id with its subnets, not both")
        if existing:
            if not _VPC.match(self.vpc_id or ""):
                problems.append(f"vpc_id: expected vpc-<hex>, got {self.vpc_id!r}")
            if not self.private_subnet_ids:
                problems.append("private_subnet_ids: an existing VPC needs its private subnets")
            bad = [s for s in self.private_subnet_ids if not _SUBNET.match(s)]
            if bad:
                problems.append(f"private_subnet_ids: expected subnet-<hex>, got {bad}")
            if len(self.availability_zones) != len(self.private_subnet_ids):
                problems.append("availability_zones: one zone per private subnet, got "
                                f"{len(self.availability_zones)} for "
                                f"{len(self.private_subnet_ids)}")
            bad = [z for z in self.availability_zones if not _ZONE.match(z)]
            if bad:
                problems.append(f"availability_zones: expected names like eu-west-1a, got {bad}")
            if self.endpoints and self.vpc_cidr is None:
                problems.append("vpc_cidr: needed to create the endpoints of an existing VPC "
                                "(or endpoints: false)")
            if self.endpoints and len(self.route_table_ids) != len(self.private_subnet_ids):
                problems.append("route_table_ids: the gateway endpoints of an existing VPC "
                                "need one route table per private subnet (or endpoints: false)")
            bad = [r for r in self.route_table_ids if not _ROUTE_TABLE.match(r)]
            if bad:
                problems.append(f"route_table_ids: expected rtb-<hex>, got {bad}")
        elif (self.private_subnet_ids or self.availability_zones or self.security_group_ids
              or self.route_table_ids or self.vpc_cidr):
            problems.append("private_subnet_ids, availability_zones, route_table_ids, "
                            "security_group_ids and vpc_cidr describe an existing VPC (vpc_id)")
        bad = [g for g in self.security_group_ids if not _GROUP.match(g)]
        if bad:
            problems.append(f"security_group_ids: expected sg-<hex>, got {bad}")
        for name in ("cidr", "vpc_cidr"):
            value = getattr(self, name)
            if value is not None and not _CIDR.match(value):
                problems.append(f"{name}: expected an IPv4 range /16 to /28, got {value!r}")
        if problems:
            raise ValueError("; ".join(problems))
        return self
