"""The data-plane image: built from the repository's Dockerfile and pushed to a private ECR
repository (pulumi-docker-build), or taken as-is from the ``plantstream:image`` config value.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws

from .context import StackContext

REPO_ROOT = Path(__file__).resolve().parents[2]
# Every input of the build (the Dockerfile, its ignore file and every COPY source); the tag is
# their digest, so an unchanged tree never rebuilds and a changed one (a lock-only change too)
# gets a new tag the immutable repository accepts. tests/infra checks this against the COPY lines.
IMAGE_INPUTS = (
    "Dockerfile",
    ".dockerignore",
    "pyproject.toml",
    "README.md",
    "requirements.lock",
    "src",
    "infra/plantstream_infra",
)


_ECR_IMAGE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/"
    r"(?P<repo>[^:@]+)"
)


def ecr_repository_arn(image: str) -> str | None:
    """The repository ARN of an ECR image reference, or None for any other registry."""
    m = _ECR_IMAGE.match(image)
    if m is None:
        return None
    partition = "aws-cn" if ".amazonaws.com.cn/" in image else "aws"
    return f"arn:{partition}:ecr:{m['region']}:{m['account']}:repository/{m['repo']}"


def source_digest(root: Path = REPO_ROOT) -> str:
    """A short content hash of the files the Dockerfile copies."""
    digest = hashlib.sha256()
    for entry in IMAGE_INPUTS:
        path = root / entry
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            if f.is_file() and "__pycache__" not in f.parts:
                digest.update(str(f.relative_to(root)).encode())
                digest.update(f.read_bytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class ImageArgs:
    ctx: StackContext
    key_arn: pulumi.Input[str] | None


class Image(pulumi.ComponentResource):
    """``ref`` is what the tasks run; ``repository_arn`` is None for images outside ECR."""

    ref: pulumi.Output[str]
    repository_arn: pulumi.Output[str] | None

    def __init__(
        self, name: str, args: ImageArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("plantstream:image:Image", name, None, opts)
        ctx = args.ctx
        configured = ctx.settings.services.image
        if configured:
            self.ref = pulumi.Output.from_input(configured)
            arn = ecr_repository_arn(configured)
            self.repository_arn = pulumi.Output.from_input(arn) if arn else None
            if arn is None and ctx.settings.network.nat == "none":
                pulumi.log.warn(
                    f"image {configured} is not in ECR and network.nat is 'none': tasks can "
                    "only pull it through an ECR pull-through cache or a NAT gateway",
                    resource=self,
                )
            self.register_outputs({"ref": self.ref})
            return

        import pulumi_docker_build as docker_build

        child = pulumi.ResourceOptions(parent=self)
        repo_name = ctx.name("plantstream")
        repo = aws.ecr.Repository(
            f"{name}-repo",
            name=repo_name,
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration={"scan_on_push": True},
            encryption_configurations=[{"encryption_type": "KMS", "kms_key": args.key_arn}],
            force_delete=True,
            tags=ctx.tags(aws.ecr.Repository, repo_name),
            opts=child,
        )
        aws.ecr.LifecyclePolicy(
            f"{name}-lifecycle",
            repository=repo.name,
            policy=json.dumps(
                {
                    "rules": [
                        {
                            "rulePriority": 1,
                            "description": "keep the 20 newest images",
                            "selection": {
                                "tagStatus": "any",
                                "countType": "imageCountMoreThan",
                                "countNumber": 20,
                            },
                            "action": {"type": "expire"},
                        }
                    ]
                }
            ),
            opts=child,
        )
        auth = aws.ecr.get_authorization_token_output(
            registry_id=repo.registry_id, opts=pulumi.InvokeOutputOptions(parent=self)
        )
        tag = source_digest()
        image = docker_build.Image(
            f"{name}-build",
            context={"location": str(REPO_ROOT)},
            dockerfile={"location": str(REPO_ROOT / "Dockerfile")},
            platforms=[docker_build.Platform.LINUX_AMD64],
            push=True,
            tags=[repo.repository_url.apply(lambda url: f"{url}:{tag}")],
            registries=[
                {
                    "address": repo.repository_url,
                    "username": auth.user_name,
                    "password": auth.password,
                }
            ],
            opts=child,
        )
        self.ref = image.ref
        self.repository_arn = repo.arn
        self.register_outputs({"ref": self.ref, "repository_arn": self.repository_arn})
