"""Replay what failed: the function's dead letters and the mappings' on-failure batches, put back
into the stream through the function's own Sink (`python -m msk_kinesis_sink.replay`).

An operator's tool (docs/replay.md): it runs with the operator's credentials, never in the
function, which never imports it. It keeps the function's rule that one module touches boto3:
its AWS calls (listing, reading and moving objects, reading the function's configuration) are in
`msk_kinesis_sink.aws`, imported only by the command once its arguments are valid, and the Sink
it publishes through makes its own clients there too. Everything in this package is pure and
tested with fakes.
"""
