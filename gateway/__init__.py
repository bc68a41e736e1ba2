"""The gateway: the FIX-like front door (docs/protocol.md). ``core`` holds the sessions and turns
messages into commands, ``validation`` checks every message against the configuration, ``reports``
turns engine events into messages, ``main`` is the process and its sockets."""
