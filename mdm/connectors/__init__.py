"""Inbound connectors: pull a source system's changes on a schedule into the ingest path.

``readers`` reads a source (a database table or query, a folder of dropped files, a paged
HTTP JSON endpoint) in batches of rows plus the watermark those rows reach; ``crypto`` keeps
the credentials encrypted at rest.  The writes (claiming a run, feeding batches to ingestion,
committing the watermark) are in ``mdm.services.connectors``.
"""
