"""Floor 3, one connection and the pool's policy: :class:`Connection` (opaques,
requests in flight, timeouts) and the dial and reconnect decisions a driver's
pool follows. Imports only the floors below."""
