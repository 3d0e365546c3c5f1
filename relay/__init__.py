"""Media relay node of the telehealth service (Starlette + aiortc, no Django).

Modules:

- :mod:`relay.tokens`: verify (and, for the web tier, sign) relay tokens
- :mod:`relay.registry`: Redis heartbeats and room placement; importable by
  the web tier without aiortc or Starlette
- :mod:`relay.forwarding`: forwarding encoded frames through aiortc
- :mod:`relay.node`: rooms, sessions, peer connections
- :mod:`relay.recording`: muxes forwarded encoded frames into files, uploads them
- :mod:`relay.app`: the HTTP API; ``python -m relay`` runs it

This package is kept import-light: importing :mod:`relay` or
:mod:`relay.registry` does not import aiortc, Starlette or Django.
"""
