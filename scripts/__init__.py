"""Pipeline logic, importable and tested without Fabric."""
