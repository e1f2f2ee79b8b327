"""plantstream on AWS: the Pulumi components, stack presets, policy pack and offline check.

Import the parts you need (``plantstream_infra.stack``, ``plantstream_infra.check``,
``plantstream_infra.policies``); this package imports nothing heavy on its own so the policy
pack can load its policies without the AWS SDK.
"""

__all__: list[str] = []
