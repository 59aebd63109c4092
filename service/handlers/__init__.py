"""Job handlers for the real work. Importing this package registers them in
`service.kinds.KINDS`; each is a thin call into a `curation` or `training` function."""

from service.handlers import mixture, scan, verification  # noqa: F401
