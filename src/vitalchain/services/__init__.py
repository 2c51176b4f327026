"""Local services the node and the tests start: free ports and supervised processes.

One "start, wait for the port, stop" mechanism for mosquitto, PostgreSQL and anvil, so each
supervisor says only what is particular to its program.
"""
