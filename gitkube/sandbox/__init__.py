"""The local test fleet (`gitkube sandbox`): network-namespace nodes, each with its own sshd and dockerd."""
