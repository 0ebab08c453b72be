"""Vendor emulators, one module per vendor (see ``arkyra.sandbox.app``)."""
