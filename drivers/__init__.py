"""Reservoir drivers, one subpackage per device family (imported as ``labbench.drivers``).

Drivers know their device only: no Ray, Zarr or protocol imports here.
"""
