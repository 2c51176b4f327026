"""The wire: one module per spec in docs/spec, each the one owner of its format.

In the manner of age's ``internal/format``: a module holds the format's frozen dataclasses, its
``encode`` and ``parse`` (``parse`` raises :class:`~vitalchain.errors.DecodeError` with a code,
never an HTTP error), and its constants: context strings, AAD strings, headers, topic builders.
It imports nothing of ours but ``errors`` and ``vitals``, so crypto, device, gateway, access,
alerts, sdk and the tests all take their formats from here and none keeps a copy.
"""
