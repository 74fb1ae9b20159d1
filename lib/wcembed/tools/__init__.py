"""Helpers of the offline world, on the shared facts only.

============  ==================================================================
sample        building a sample region in WorldCover layout from a real scene
servers       loopback plumbing of local servers (ports, CGI gateway)
plots         static figures of column files, PNG bytes of a figure
labextension  the map extension's one unmeetable shared-module range, widened
============  ==================================================================
"""
