"""AWS integration: credentials from Secrets Manager (rotation-safe)."""

from plantstream.aws.secrets import CredentialSource, RedisAuth, with_password

__all__ = ["CredentialSource", "RedisAuth", "with_password"]
