"""The test doubles of the stores (real sockets, driven by the real client libraries) and their
own tests."""
