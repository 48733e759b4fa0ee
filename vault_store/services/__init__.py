"""The flows over the ports: read, shred, overwrite, gc, retention, rewrap, maintenance, reports."""
