"""Small shared helpers: attribute-access configs and logging."""
