"""The API server: a Kubernetes-compatible read API over the state DB, for kubectl and the official clients."""
