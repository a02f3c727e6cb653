"""CDK infrastructure of the MSK -> Kinesis sink: config, constructs, and the stack."""
