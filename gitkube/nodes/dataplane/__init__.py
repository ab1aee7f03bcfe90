"""The Services data plane on each node: addresses, routes and rules, the proxy and cluster DNS."""
