"""Models: references, the catalog, hub listings, pulls and the files on disk."""
