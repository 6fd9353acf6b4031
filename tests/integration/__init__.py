"""Every RPC through a real in-process gRPC server on port 0 (raw stubs, SDK), and the long checks
on the trained models (full run only)."""
