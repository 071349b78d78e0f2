"""Many models, one platform: shared resources in one stack, a small stack per model.

A hundred models must not mean a hundred copies of the data lake, its key and
the failure topic. :class:`MdlcPlatformStack` holds what models share;
:func:`build_app` adds one :class:`~mdlc_constructs.model_stack.MdlcModelStack`
per spec that takes the platform's resources by interface::

    app = cdk.App()
    build_app(app, Path("models"), shared_platform=True)   # Mdlc-Platform + Mdlc-<name>...
    build_app(app, Path("models"), shared_platform=False)  # Mdlc-<name>, self-contained

References only go from model stacks to the platform stack (a model reads
the platform's buckets, key and topic; the platform never names a model's
resource), so CloudFormation can deploy the platform first and the model
stacks in parallel, and removing a model never touches the platform.

The code version (the commit a deployment was built from) is read by
:func:`mdlc_constructs.lineage.code_version` from the context key
``mdlc:codeVersion``, which the pipeline's synth step sets
(``cdk synth -c mdlc:codeVersion=<commit>``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct

from .compliance import acknowledge
from .model_stack import MdlcModelStack
from .network import ModelNetwork
from .notifications import notification_topic
from .spec import ModelSpec, SpecError, load_specs
from .spec.network import NetworkSpec
from .storage import BucketOverrides, DataLake

#: Construct id of the platform stack that :func:`build_app` creates.
PLATFORM_STACK_ID = "Mdlc-Platform"


def stack_id(spec: ModelSpec, prefix: str = "Mdlc") -> str:
    """The construct id (and default stack name) of a model's stack: ``Mdlc-<name>``.

    A public contract: a new id deploys a new stack next to the old one.
    """
    return f"{prefix}-{spec.name}"


class MdlcPlatformStack(cdk.Stack):
    """What every model of an account and region shares.

    Args:
        key: an existing KMS key for the data lake. Default: a new key with
            rotation, retained on delete (see :class:`DataLake`).
        bucket_overrides: lifecycle settings of the shared buckets. Default:
            :class:`BucketOverrides` defaults.
        removal_policy: for the key and the buckets. Default: RETAIN.
        topic_display_name: Default: ``"MDLC platform: failures and approvals"``.
        network: the private network every model that asks for one runs in (a
            spec ``network`` section, or a :class:`ModelNetwork` built in this
            stack by a subclass). Default: none.
        **kwargs: passed to ``Stack`` (``env``, ``stack_name``, ...).

    Attributes:
        data_lake: the shared :class:`DataLake` (buckets are partitioned by
            model: every stage writes under ``<prefix>/<model>/``).
        key: the data lake's key (``kms.IKey``).
        topic: the shared failure and approval topic (``sns.ITopic``),
            encrypted with ``key``; model names are in every message's subject.
    """

    # The parts are built from these classes (the same mechanism as
    # MdlcModelStack's stage attributes): a subclass of the platform sets one
    # to a subclass of the part, which keeps the library's construct id.

    #: ``build_data_lake``: the shared buckets and key (construct id ``DataLake``).
    data_lake_class: type[DataLake] = DataLake
    #: ``build_network``: the shared network (construct id ``Network``).
    network_class: type[ModelNetwork] = ModelNetwork

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        key: kms.IKey | None = None,
        bucket_overrides: BucketOverrides | None = None,
        removal_policy: cdk.RemovalPolicy = cdk.RemovalPolicy.RETAIN,
        topic_display_name: str = "MDLC platform: failures and approvals",
        network: NetworkSpec | None = None,
        **kwargs: object,
    ) -> None:
        kwargs.setdefault("description", "mdlc-constructs platform: shared data lake, key, topic")
        super().__init__(scope, construct_id, **kwargs)  # type: ignore[arg-type]
        cdk.Tags.of(self).add("mdlc:component", "platform")
        self.data_lake = self.build_data_lake(key, bucket_overrides, removal_policy)
        self.key: kms.IKey = self.data_lake.key
        self.topic: sns.ITopic = self.build_topic(topic_display_name)
        self.network: ModelNetwork | None = self.build_network(network)
        acknowledge(
            self,
            "PCI.DSS.321-IAMNoInlinePolicy",
            "CDK grant methods attach a policy to exactly one role, scoped to the "
            "resources that role uses; a shared managed policy would widen access",
        )

    # -- extension points: override in a subclass to change one shared resource --

    def build_data_lake(
        self,
        key: kms.IKey | None,
        overrides: BucketOverrides | None,
        removal_policy: cdk.RemovalPolicy,
    ) -> DataLake:
        """The shared data lake. Construct id ``DataLake`` (a public contract)."""
        return self.data_lake_class(
            self, "DataLake", key=key, overrides=overrides, removal_policy=removal_policy
        )

    def build_network(self, network: NetworkSpec | None) -> ModelNetwork | None:
        """The shared network (construct id ``Network``), or None without one."""
        if network is None:
            return None
        return self.network_class.from_spec(self, "Network", network, key=self.key)

    def build_topic(self, display_name: str) -> sns.Topic:
        """The shared topic, encrypted with the data key, TLS only, this account only."""
        return notification_topic(self, "Notifications", key=self.key, display_name=display_name)

    def model_stack_props(self, spec: ModelSpec) -> dict[str, Any]:
        """What a model stack on this platform takes from it, as keyword
        arguments of :class:`MdlcModelStack` (or a team's subclass): the data
        lake and topic, and the network when ``spec`` asks for one. One place,
        so a team's factory shares exactly what the default one does."""
        return {
            "data_lake": self.data_lake,
            "alarm_topic": self.topic,
            "network": self.network if spec.network is not None else None,
        }


#: Builds one model's stack: ``(scope, id, spec, platform or None, env) -> Stack``.
ModelStackFactory = Callable[
    [Construct, str, ModelSpec, MdlcPlatformStack | None, cdk.Environment | None],
    cdk.Stack,
]


def model_stack_factory(
    stack_class_of: Callable[[ModelSpec], type[MdlcModelStack]],
) -> ModelStackFactory:
    """A factory for :func:`build_app` whose stack of each spec is of the class
    ``stack_class_of(spec)`` names (a team's :class:`MdlcModelStack` subclass for
    its models), built as the default one is: on the platform's data lake and
    topic when given, and its network when the spec asks for one
    (:meth:`MdlcPlatformStack.model_stack_props`). A team chooses the class;
    what the platform shares stays written once."""

    def build(scope: Construct, construct_id: str, spec: ModelSpec,
              platform: MdlcPlatformStack | None, env: cdk.Environment | None) -> MdlcModelStack:
        shared = platform.model_stack_props(spec) if platform is not None else {}
        return stack_class_of(spec)(scope, construct_id, spec=spec, env=env, **shared)

    return build


#: An :class:`MdlcModelStack` per spec, on the platform's data lake and topic when
#: given (and its network, when the spec asks for one).
default_model_stack: ModelStackFactory = model_stack_factory(lambda _spec: MdlcModelStack)


@dataclass
class MdlcApp:
    """What :func:`build_app` created."""

    specs: list[ModelSpec]
    platform: MdlcPlatformStack | None
    models: dict[str, cdk.Stack] = field(default_factory=dict)


def shared_network(specs: list[ModelSpec], models_dir: str | Path) -> NetworkSpec | None:
    """The one ``network`` section of the specs that have one: a shared platform
    owns the network of all its models, so they must describe the same one."""
    networks = [spec.network for spec in specs if spec.network is not None]
    if any(network != networks[0] for network in networks):
        named = [f"{spec.source or spec.name}: network" for spec in specs
                 if spec.network is not None]
        raise SpecError(models_dir, [
            "the specs describe different networks; a shared platform has one, so every "
            "network section must be the same (or use shared_platform=False): "
            + ", ".join(named)])
    return networks[0] if networks else None


#: Context key: a comma-separated list of models to synthesize (``cdk synth -c
#: mdlc:only=fraud``); see ``build_app(only=...)``.
ONLY_CONTEXT = "mdlc:only"


def only_from_context(scope: Construct) -> list[str] | None:
    """The models ``-c mdlc:only=a,b`` selects, or None when it is not set."""
    value = scope.node.try_get_context(ONLY_CONTEXT)
    if value is None:
        return None
    names = value if isinstance(value, list) else str(value).split(",")
    return [str(name).strip() for name in names if str(name).strip()]


def build_app(
    app: Construct,
    models_dir: str | Path,
    *,
    shared_platform: bool,
    env: cdk.Environment | None = None,
    model_stack: ModelStackFactory = default_model_stack,
    prefix: str = "Mdlc",
    specs: list[ModelSpec] | None = None,
    only: Sequence[str] | None = None,
    platform_class: type[MdlcPlatformStack] = MdlcPlatformStack,
) -> MdlcApp:
    """Add the stacks for every spec in ``models_dir`` to ``app`` (an App or a Stage).

    Args:
        models_dir: the folder of ``*.yaml`` specs.
        shared_platform: True: one ``<prefix>-Platform`` stack with the data
            lake, key and topic, and one small ``<prefix>-<name>`` stack per
            model that uses them. False: one self-contained stack per model.
        env: account and region of every stack. Default: environment-agnostic.
        model_stack: builds one model's stack; a team passes its own
            ``MdlcModelStack`` subclass here. Default: :func:`default_model_stack`.
        prefix: of every stack id. Default ``"Mdlc"``.
        specs: already loaded specs. Default: ``load_specs(models_dir)``.
        only: build only these models' stacks (and the platform); every spec
            is still validated. ``cdk synth`` of one model in a big app then
            skips the others' work, which CDK's own stack selection does not
            (the whole app is always constructed). Default: every model.
        platform_class: the shared platform's class (with ``shared_platform``),
            e.g. a team's subclass with its own ``data_lake_class``; it is
            built under the id ``<prefix>-Platform``. Default:
            :class:`MdlcPlatformStack`.

    Raises:
        SpecError: a spec is invalid, two specs share a name, there is none, or
            ``only`` names a model there is no spec of.
    """
    if specs is None:
        specs = load_specs(models_dir)
    if not specs:
        raise SpecError(models_dir, [f"{models_dir}: no *.yaml model specs found"])
    if only is not None:
        wanted = set(only)
        unknown = sorted(wanted - {spec.name for spec in specs})
        if unknown or not wanted:
            raise SpecError(models_dir, [
                f"{ONLY_CONTEXT}: no model spec named {unknown or '(none given)'}; "
                f"the models are {sorted(spec.name for spec in specs)}"])
        specs = [spec for spec in specs if spec.name in wanted]
    platform = (
        platform_class(app, f"{prefix}-Platform", env=env,
                       network=shared_network(specs, models_dir))
        if shared_platform else None
    )
    result = MdlcApp(specs=specs, platform=platform)
    for spec in specs:
        stack = model_stack(app, stack_id(spec, prefix), spec, platform, env)
        if platform is not None:
            # Explicit, so `cdk deploy Mdlc-<name>` deploys the platform first
            # even before the model references anything of it.
            stack.add_stack_dependency(platform, reason="uses the shared data lake, key and topic")
        result.models[spec.name] = stack
    return result
