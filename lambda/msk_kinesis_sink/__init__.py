"""Ordered, lossless Amazon MSK -> Kinesis Data Streams sink for AWS Lambda."""

__version__ = "0.1.0"
