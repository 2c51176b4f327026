"""The store's side of consented access (docs/spec/access.md): challenge, consent check, release."""
