#!/usr/bin/env python3
"""CDK app: context -> validated SinkConfig -> one stack, checked by cdk-nag. No AWS calls."""

from __future__ import annotations

import sys
from pathlib import Path

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from infra.bundling import BundlingError
from infra.config import ConfigError, SinkConfig
from infra.stack import MskKinesisSinkStack, check_template_size


def main() -> None:
    app = cdk.App()
    try:
        config = SinkConfig.from_context(app.node.get_all_context())
        # Environment-agnostic unless the account or region is pinned in context.
        env = (
            cdk.Environment(account=config.account, region=config.region)
            if config.account or config.region
            else None
        )
        MskKinesisSinkStack(app, config.stack_name, config=config, env=env)
        # Unacknowledged findings fail the synth; acknowledgements live beside their resources.
        cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
        assembly = app.synth()
        template = assembly.get_stack_by_name(config.stack_name).template_full_path
        check_template_size(Path(template), config)
    except ConfigError as error:
        for problem in error.problems:  # every problem found, one line each
            print(f"configuration error: {problem}", file=sys.stderr)
        raise SystemExit(1) from None
    except BundlingError as error:
        print(f"bundling error: {error}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
