"""Care: what patients and providers do with the data: consented access, verification, FHIR.

- :mod:`.access`: the store's provider API (challenge, consent-checked release) and its client.
- :mod:`.verify`: ``vitalchain verify``, trusting only the chain.
"""
