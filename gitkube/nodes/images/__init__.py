"""Images gitkube builds from Debian packages (no registry) and ships to nodes over SSH."""
