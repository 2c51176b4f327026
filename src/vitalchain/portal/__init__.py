"""The care portal: a local web app on 127.0.0.1 for one provider or one patient.

Why local: decryption stays on the user's side, as with the SDK.  The portal process holds
the user's key, talks to the gateways (ciphertext only) and to the chain, decrypts and
verifies there, and serves pages to a browser on the same machine.  The browser talks only
to the portal (a login token printed at start, a session cookie, CSRF on every form, no
CORS); no plaintext leaves the process except to that browser.  docs/portal.md shows it.
"""
