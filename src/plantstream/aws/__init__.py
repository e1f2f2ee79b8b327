"""AWS integration: credentials from Secrets Manager (rotation-safe)."""

from plantstream.aws.secrets import CredentialSource, with_password

__all__ = ["CredentialSource", "with_password"]
