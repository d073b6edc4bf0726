"""Floor 5, consumption: rebalancing, pulls, process queues, offsets, the push and
the pull consumer cores. Imports the floors below and :mod:`rocketmq_proto.flows`."""
