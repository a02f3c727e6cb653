"""The function's AWS adapters; with the operator tools' `aws_access`, the only code using boto3.

`clients` makes the container's clients, `http` carries their requests through the deadline-bounded
`transport`, `kinesis` and `s3` are the record and dead-letter writers, and `classify` turns every
SDK error and answer into the sink's own values. The other modules that import boto3 or botocore
are `msk_kinesis_sink.replay.aws_access` and `msk_kinesis_sink.doctor.aws_access`, the operator's
calls, which the function never makes (tests/unit/test_layout.py holds them to this).
"""
