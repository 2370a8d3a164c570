"""Import every subcommand module so each one registers itself on the group.

Add one line per new subcommand module here.
"""
