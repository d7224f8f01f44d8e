"""Online serving: the gRPC and HTTP servers and the Python gRPC client."""
