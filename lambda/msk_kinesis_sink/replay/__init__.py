"""Replay what failed: the function's dead letters and the mappings' on-failure batches, put back
into the stream through the function's own Sink (`python -m msk_kinesis_sink.replay`).

An operator's tool (docs/replay.md): it runs with the operator's credentials, never in the
function, which never imports it. Its own AWS calls (listing, reading and moving objects, reading
the function's configuration) are in `aws_access`, the one module here that imports boto3,
imported only by the command once its arguments are valid; the Sink it publishes through makes
its clients in `msk_kinesis_sink.aws`, as in the function. Everything else in this package is
pure and tested with fakes.
"""
