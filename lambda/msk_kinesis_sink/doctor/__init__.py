"""Ask a deployed stack how it is: `python -m msk_kinesis_sink.doctor --stack NAME`.

An operator's tool (docs/runbook.md#the-doctor), read-only, with the operator's credentials; the
function never imports it. Its AWS calls are in `aws_access`, the one module here that imports
boto3; `checks` judges what `model.Deployment` reads, and is tested with fakes.
"""
