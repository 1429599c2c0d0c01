"""Small helpers with no pointformer dependency, the bottom layer: atomic file writes (``atomic``)
and JSON reading with clear errors (``jsonio``)."""
