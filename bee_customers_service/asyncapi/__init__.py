"""The AsyncAPI document of the events (docs/asyncapi.yaml), generated from the code (`document.py`).

A top-level package, not part of events/: it reads the consumed contracts of activity/ and
identity/, which events/ may not import.
"""
