"""gitkube: Kubernetes v1 core, GitOps-style, on Docker hosts over SSH."""
__version__ = "0.1.0"
