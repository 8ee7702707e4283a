"""The Emperor (``emperor = DIR | GLOB``): one process that runs a vassal instance per config
file, and Broodlord mode (zergs on a vassal's sos). See docs/elastic.md.

The package itself loads nothing: an instance loads ``uzerg.emperor.link`` (and the channel)
only as a vassal, and only the Emperor loads ``uzerg.emperor.main``.
"""
