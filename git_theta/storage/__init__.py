"""Where tensor bytes live: the object codec and the content-addressed object store."""
