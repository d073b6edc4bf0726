"""The RocketMQ remoting protocol as pure state machines: no sockets, threads or clocks."""
