"""What providers and patients run: the provider client, the alert subscriber, opening and
verifying alerts, ``verify_patient`` and the block sources it reads.

Nothing here imports server code (access, alerts, gateway, node): the servers build on it.
"""
