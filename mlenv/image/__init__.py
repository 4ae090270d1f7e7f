"""Images of a lock: the engines that build them (daemonless OCI writer, BuildKit,
classic Docker builder), their shared build plan, and reuse by content hash."""
