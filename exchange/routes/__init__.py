"""HTTP routers, one module per package surface."""
