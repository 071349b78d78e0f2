"""The data functions' own layer: NumPy, PyArrow, DuckDB, sqlglot and Powertools.

The functions that read and write the lake's tables (sourcing, quality,
features, monitoring, training input, batch decisions) run the compiled SQL
on DuckDB over Arrow tables. They used to take NumPy and PyArrow from the AWS
SDK for pandas layer, which leaves no room for DuckDB under Lambda's 250 MiB
(its 3.16 layer alone is reported at 204 MiB unzipped, aws/aws-sdk-pandas#3331),
and whose versions are AWS's, not the ones the tests ran. This layer is
built instead from the pinned wheels (:data:`mdlc_constructs.wheels.PINS`,
equal to ``constraints.txt``) for the functions' runtime and architecture,
without Docker (``pip --platform``), trimmed (:mod:`mdlc_constructs.layer_trim`)
to about 210 MB. It carries Powertools too, so a data function has this one
layer and its code, and :meth:`DataLayer.check_fits` measures the whole of
what Lambda counts at synthesis instead of trusting another layer's size.

One layer per stack (:meth:`DataLayer.of`): its asset's hash is the tree's
content hash, computed once when the tree is installed, so every stack of an
app shares one staged asset and one upload. CDK stages an asset by copying
it into the cloud assembly unless the staged folder is already there, which
for 200 MB on every synthesis (a test suite synthesizes hundreds of apps)
costs seconds and gigabytes; :func:`prestage` puts a folder of hard links
into the installed tree there first. Across file systems it leaves CDK to
copy.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from aws_cdk import AssetHashType, Stack, Stage
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from . import wheels

#: The id of the stack's layer construct (its logical id derives from it).
CONSTRUCT_ID = "MdlcDataLayer"
#: The SPDX licences of what the layer carries (NumPy, PyArrow, DuckDB,
#: sqlglot, Powertools, jmespath, typing_extensions).
LICENSE = "BSD-3-Clause AND Apache-2.0 AND MIT AND MIT-0 AND PSF-2.0"


#: aws-cdk-lib's context key that turns asset staging off (SAM's local runs).
STAGING_DISABLED = "aws:cdk:disable-asset-staging"


def prestage(scope: Construct, source: Path, custom_hash: str) -> Path | None:
    """Hard-link ``source`` to where CDK would stage it (``asset.<hash>`` in the
    app's asset folder, the hash being SHA-256 of the custom hash), so that CDK
    finds it staged and does not copy it. ``None`` when staging is off or the
    folder is on another file system (CDK then copies as usual)."""
    if scope.node.try_get_context(STAGING_DISABLED):
        return None
    outdir = Path(Stage.of(scope).asset_outdir)
    staged = outdir / f"asset.{hashlib.sha256(custom_hash.encode()).hexdigest()}"
    if staged.is_dir():
        return staged
    outdir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".mdlc-layer-", dir=outdir))
    try:
        shutil.copytree(source, scratch / "tree", copy_function=os.link)
        (scratch / "tree").rename(staged)
    except OSError:  # another file system (EXDEV), or another process won the rename
        return staged if staged.is_dir() else None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return staged


class FunctionTooLarge(ValueError):
    """A data function's code and layer pass Lambda's unzipped limit."""


class DataLayer(Construct):
    """The stack's data layer (construct id :data:`CONSTRUCT_ID`).

    Attributes:
        layer: the ``AWS::Lambda::LayerVersion``; old versions are deleted when
            a new one replaces them (functions already deployed keep theirs).
        bytes: its unzipped size, which Lambda counts against each function.
        folder: the installed tree (``layer/python/...`` plus its manifest).
    """

    def __init__(self, scope: Construct, construct_id: str, *,
                 target: wheels.Target | None = None) -> None:
        super().__init__(scope, construct_id)
        from .functions import ARCHITECTURE, RUNTIME

        target = target or wheels.lambda_target(RUNTIME.name, ARCHITECTURE.name)
        self.folder = wheels.installed(wheels.DATA_LAYER_PACKAGES, target, layer=True)
        manifest = json.loads((self.folder / wheels.MANIFEST_NAME).read_text())
        self.bytes: int = manifest["bytes"]
        self.packages: list[str] = manifest["packages"]
        prestage(self, self.folder / wheels.LAYER_SITE.parent, manifest["sha256"])
        self.layer = lambda_.LayerVersion(
            self,
            "Layer",
            code=lambda_.Code.from_asset(
                str(self.folder / wheels.LAYER_SITE.parent),
                asset_hash=manifest["sha256"],
                asset_hash_type=AssetHashType.CUSTOM,
            ),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
            description=(f"mdlc-constructs data layer for {RUNTIME.name} {ARCHITECTURE.name}: "
                         + ", ".join(self.packages))[:256],
            license=LICENSE,
        )

    @classmethod
    def of(cls, scope: Construct) -> DataLayer:
        """The data layer of ``scope``'s stack, created on first use."""
        stack = Stack.of(scope)
        existing = stack.node.try_find_child(CONSTRUCT_ID)
        if isinstance(existing, DataLayer):
            return existing
        return cls(stack, CONSTRUCT_ID)

    def check_fits(self, function_path: str, code: Path) -> int:
        """The unzipped bytes of a function with this layer and the ``code``
        folder; raises :class:`FunctionTooLarge` past Lambda's limit, naming
        the function and both parts, before a deployment fails on it."""
        code_bytes = wheels.folder_size(code)
        total = self.bytes + code_bytes
        if total > wheels.LAMBDA_UNZIPPED_LIMIT:
            raise FunctionTooLarge(
                f"{function_path}: its code ({code_bytes:,} bytes, {code}) and the data layer "
                f"({self.bytes:,} bytes) come to {total:,} bytes unzipped, past Lambda's "
                f"{wheels.LAMBDA_UNZIPPED_LIMIT:,}; move what the code vendors (packages=, "
                "extra_code=) into the job that needs it")
        return total
