"""The sequencer process: gives every command its global sequence number and timestamp, journals it, publishes it."""
