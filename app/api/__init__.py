"""HTTP layer: routes, response schemas, the error-to-status map, upload reading, request middleware."""
