"""Readers for the on-disk dataset formats of `shared/data` (see its MANIFEST.md).

One module per format; each reads through `xlt_jax.data.io.open_lines` so that malformed input raises
`DataFormatError` naming the file and line. Import the submodule you need; nothing heavy is imported here.
"""
