"""The chaincode-as-a-service package's templates (``ledger.fabric.packaging`` fills them in).

``metadata.json`` is the package's metadata (Fabric reads its ``type`` and ``label``);
``connection.json`` goes into ``code.tar.gz`` and tells the peer's ccaas builder where
the chaincode service listens (``/work/fabric-src/ccaas_builder``'s ``connection``).
"""
