"""bee_customers_service: every business's view of its customers on the BeeConect platform."""

__version__ = "0.1.0"
