"""The write API's routes, one module per resource."""
