"""The gateway under test: kinds (what differs between gateways) and the managed process."""
