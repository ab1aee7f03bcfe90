"""The kubelet's work over SSH: observe and run pods' containers, probes, lifecycle hooks, logs and exec."""
