"""Transports: SSH (the only paramiko user), the Docker Engine API over it (the only docker SDK user), and the fleet of warm connections."""
