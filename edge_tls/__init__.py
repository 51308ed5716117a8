"""edge_tls"""
