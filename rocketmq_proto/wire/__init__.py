"""Floor 1, the wire: codes, errors, frames and commands in both header formats,
request headers, route and other JSON bodies, ACL signing. Imports nothing else
of the core."""
