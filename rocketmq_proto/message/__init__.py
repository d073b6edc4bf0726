"""Floor 2, messages: the message classes, properties, compression, message ids,
the batch and stored-message codecs, namespaces. Imports only the wire floor."""
