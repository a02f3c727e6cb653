"""The local loop: an MSK event-source-mapping emulator, a fault-injecting Kinesis proxy, local
servers (a Kafka-protocol broker and kinesalite), a workload generator and a stream auditor."""
