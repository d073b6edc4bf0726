"""Floor 4, the client's decisions as flows (generators of effects that a driver
performs): the session (routes, heartbeats, name servers), producer and admin;
the consumers in :mod:`rocketmq_proto.flows.consumer`. Imports only the floors
below."""
